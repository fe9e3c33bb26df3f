from django.urls import path

from . import views

app_name = "imagejobs"

urlpatterns = [
    path("<uuid:job_id>/image/", views.job_image, name="image"),
]
