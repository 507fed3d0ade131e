"""Settings of the checks project: the database from ``KASHQ_TEST_DJANGO_DATABASE`` (a
JSON ``DATABASES`` entry), ``settings.KASHQ`` from ``KASHQ_TEST_DJANGO_KASHQ`` (JSON)."""

import json
import os

SECRET_KEY = "checks-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "kashq.contrib.django",
    "django_project.checks",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "django_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": json.loads(
        os.environ.get(
            "KASHQ_TEST_DJANGO_DATABASE",
            '{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}',
        )
    )
}
KASHQ = json.loads(os.environ.get("KASHQ_TEST_DJANGO_KASHQ", "{}"))
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
