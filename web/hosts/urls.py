from django.urls import path

from web.hosts import views

app_name = "hosts"

urlpatterns = [
    path("", views.host_list, name="list"),
    path("add/", views.host_add, name="add"),
    path("<slug:name>/", views.host_detail, name="detail"),
    path("<slug:name>/cells/<int:cell_id>/", views.host_cell, name="cell"),
    path("<slug:name>/distances/", views.host_distances, name="distances"),
    path("<slug:name>/numastat/", views.host_numastat, name="numastat"),
    path("<slug:name>/numa-balancing/", views.host_numa_balancing, name="numa-balancing"),
    path("<slug:name>/sync/", views.host_sync, name="sync"),
    path("<slug:name>/sync-status/", views.host_sync_status, name="sync-status"),
    path("<slug:name>/remove/", views.host_remove, name="remove"),
]
