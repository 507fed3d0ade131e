"""kashq's homes in web frameworks: :mod:`kashq.contrib.fastapi` (FastAPI and Starlette).

Each module imports its framework, so ``import kashq`` loads none of them.
"""
