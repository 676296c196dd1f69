from django.urls import path

from web.tokens import views

app_name = "tokens"

urlpatterns = [
    path("", views.token_list, name="list"),
    path("new/", views.token_create, name="create"),
    path("<str:key>/revoke/", views.token_revoke, name="revoke"),
]
