"""Getting an API token: ``POST /api/v1/auth/login/`` with the user's name and password (HTTP
basic authentication, throttled by django-axes like the login page) answers a new token.
Tokens are stored hashed (knox); ``POST /api/v1/auth/logout/`` revokes the token it is called
with.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from knox.views import LoginView as KnoxLoginView
from knox.views import LogoutView as KnoxLogoutView
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication
from rest_framework.permissions import IsAuthenticated

__all__ = ["LoginView", "LogoutView"]


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text='send it as "Authorization: Token <token>"')
    expiry = serializers.DateTimeField(allow_null=True)


class LoginView(KnoxLoginView):
    """A new token for the user whose name and password come with the request (basic auth)."""

    authentication_classes = [BasicAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: TokenSerializer})
    def post(self, request, format=None):
        return super().post(request, format=format)


class LogoutView(KnoxLogoutView):
    """Revoke the token this request came with."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, format=None):
        return super().post(request, format=format)
