from django.urls import path

from web.balancing import views

app_name = "balancing"

urlpatterns = [
    path("", views.plan_list, name="list"),
    path("plans/<uuid:pk>/", views.plan_detail, name="plan"),
    path("plans/<uuid:pk>/status/", views.plan_status, name="plan-status"),
    path("plans/<uuid:pk>/approve/", views.plan_approve, name="approve"),
    path("hosts/<slug:name>/plan/", views.plan_request, name="request"),
    path("policy/<slug:name>/", views.policy_edit, name="policy"),
]
