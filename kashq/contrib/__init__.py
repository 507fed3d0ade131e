"""kashq's homes in web frameworks: :mod:`kashq.contrib.fastapi` (FastAPI and Starlette) and
:mod:`kashq.contrib.flask`.

Each module imports its framework, so ``import kashq`` loads none of them.
"""
