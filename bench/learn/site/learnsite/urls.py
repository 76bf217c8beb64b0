from django.contrib import admin
from django.urls import path

from catalog import views

urlpatterns = [
    path("", views.home),
    path("export.csv", views.export_csv),
    path("feed/", views.feed),
    path("report/", views.report),
    path("admin/", admin.site.urls),
]
