"""``/api/``: the v1 resources, token login/logout, the OpenAPI schema and its docs page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from api.views.balancing import NumaBalancingView, PlanViewSet, PolicyViewSet
from api.views.changes import ChangeViewSet
from api.views.hosts import HostViewSet
from api.views.numastat import NumastatView
from api.views.tokens import LoginView, LogoutView
from api.views.vms import VmDetailView, VmListView

app_name = "api"

router = DefaultRouter()
router.register("hosts", HostViewSet, basename="host")
router.register("changes", ChangeViewSet, basename="change")
router.register("plans", PlanViewSet, basename="plan")
router.register("policies", PolicyViewSet, basename="policy")

urlpatterns = [
    path("v1/", include(router.urls)),
    path(
        "v1/hosts/<slug:name>/numa-balancing/",
        NumaBalancingView.as_view(),
        name="host-numa-balancing",
    ),
    path("v1/hosts/<slug:name>/numastat/", NumastatView.as_view(), name="host-numastat"),
    path("v1/vms/", VmListView.as_view(), name="vm-list"),
    path("v1/vms/<slug:host>/<uuid:uuid>/", VmDetailView.as_view(), name="vm-detail"),
    path("v1/auth/login/", LoginView.as_view(), name="login"),
    path("v1/auth/logout/", LogoutView.as_view(), name="logout"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
