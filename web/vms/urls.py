from django.urls import path

from web.vms import views

app_name = "vms"

urlpatterns = [
    path("", views.vm_list, name="list"),
    path("<slug:host_name>/<uuid:uuid>/", views.vm_detail, name="detail"),
    path("<slug:host_name>/<uuid:uuid>/change/<slug:kind>/", views.vm_change, name="change"),
    path(
        "<slug:host_name>/<uuid:uuid>/balancing-flags/",
        views.vm_balancing_flags,
        name="balancing-flags",
    ),
]
