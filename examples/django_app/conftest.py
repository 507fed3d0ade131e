pytest_plugins = ["kashq.contrib.django.fixtures"]
