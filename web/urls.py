from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from web import metrics, views

urlpatterns = [
    path("", views.home, name="home"),
    path("status/", views.status_page, name="status"),
    path("status/table/", views.status_fragment, name="status-fragment"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("hosts/", include("web.hosts.urls", namespace="hosts")),
    path("vms/", include("web.vms.urls", namespace="vms")),
    path("changes/", include("web.changes.urls", namespace="changes")),
    path("balancing/", include("web.balancing.urls", namespace="balancing")),
    path("api/", include("api.urls", namespace="api")),
    path("account/tokens/", include("web.tokens.urls", namespace="tokens")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
