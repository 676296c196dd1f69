"""Shared fixtures for every tier."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def admin_password() -> str:
    return "correct-horse-battery-staple"


@pytest.fixture
def operator(django_user_model, admin_password):
    """A logged-in-able superuser, like the one `make run` creates."""
    return django_user_model.objects.create_superuser("ops", "", admin_password)
