from django.urls import path

from web.changes import views

app_name = "changes"

urlpatterns = [
    path("", views.change_list, name="list"),
    path("export.csv", views.change_export, name="export"),
    path("<uuid:pk>/", views.change_detail, name="detail"),
    path("<uuid:pk>/status/", views.change_status, name="status"),
]
