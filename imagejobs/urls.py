from django.urls import path

from . import views

app_name = "imagejobs"

urlpatterns = [
    path("<uuid:job_id>/image/", views.job_image, name="image"),
    path("<uuid:job_id>/preview/", views.job_preview, name="preview"),
]
