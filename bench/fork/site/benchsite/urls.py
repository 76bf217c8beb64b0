from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("products/", views.products),
    path("db/", views.db),
    path("healthz", views.healthz),
]
