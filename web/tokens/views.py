"""``/account/tokens/``: a user's own API tokens (knox): list, create, revoke.

Any signed-in user with a role (the viewer's ``roles.VIEW_HOST``, which operators and admins
have too) manages their own tokens; a token never grants more than its user (knox
authenticates the user, :class:`api.permissions.Roles` applies the user's role). Nobody sees or
revokes another user's token here: another's is 404, like one that does not exist. Admins
revoke anyone's in the admin (:mod:`web.tokens.admin`).

knox stores a token's hash only: the token itself is shown once, on the page that answers its
creation (not cached), and can never be shown again.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from knox.models import AuthToken

from numaportal import roles
from web.access import requires

__all__ = ["token_create", "token_list", "token_revoke"]


def _max_days() -> int:
    return max(1, int(settings.NUMAPORTAL_API_TOKEN_DAYS))


class TokenCreateForm(forms.Form):
    days = forms.IntegerField(
        label="Valid for (days)",
        min_value=1,
        required=False,
        help_text="At most the portal's limit (NUMAPORTAL_API_TOKEN_DAYS); blank: the limit.",
    )

    def clean_days(self) -> int:
        days = self.cleaned_data.get("days")
        limit = _max_days()
        if days is None:
            return limit
        if days > limit:
            raise forms.ValidationError(f"at most {limit} days")
        return days


def _own_tokens(request: HttpRequest):
    return AuthToken.objects.filter(user=request.user).order_by("-created")


def _render_list(request: HttpRequest, form: TokenCreateForm, status: int = 200) -> HttpResponse:
    context = {"tokens": _own_tokens(request), "form": form, "now": timezone.now()}
    return render(request, "tokens/token_list.html", context, status=status)


@require_safe
@requires(roles.VIEW_HOST)
def token_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request, TokenCreateForm(initial={"days": _max_days()}))


@never_cache
@require_POST
@requires(roles.VIEW_HOST)
def token_create(request: HttpRequest) -> HttpResponse:
    """A new token of the signed-in user: the one page that ever shows it."""
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _render_list(request, form)
    instance, token = AuthToken.objects.create(
        user=request.user, expiry=timedelta(days=form.cleaned_data["days"])
    )
    return render(request, "tokens/token_created.html", {"instance": instance, "token": token})


@require_http_methods(["GET", "HEAD", "POST"])
@requires(roles.VIEW_HOST)
def token_revoke(request: HttpRequest, key: str) -> HttpResponse:
    """GET: the confirmation; POST: revoke. Only the user's own tokens (else 404)."""
    token = _own_tokens(request).filter(token_key=key).first()
    if token is None:
        raise Http404("no such token of yours")
    if request.method == "POST":
        # knox keys are 15 characters of a 64-character token: two tokens of one user sharing
        # one would be a 1 in 16**15 event; revoke exactly the one shown.
        AuthToken.objects.filter(pk=token.pk).delete()
        messages.success(request, f"Token {token.token_key}… revoked.")
        return redirect("tokens:list")
    return render(request, "tokens/token_confirm_revoke.html", {"token": token})
