import os

from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from .models import Category, Product


def products(request):
    page = int(request.GET.get("page", "1"))
    items = (Product.objects.select_related("category").order_by("id")[(page - 1) * 20: page * 20])
    summary = Category.objects.annotate(n=Count("products"), stock=Sum("products__stock")).order_by("name")
    return render(request, "shop/products.html", {"items": items, "summary": summary, "page": page})


def db(request):
    """Which database session serves this process (for the PostgreSQL test)."""
    with connection.cursor() as c:
        if connection.vendor == "postgresql":
            c.execute("SELECT pg_backend_pid()")
            backend = c.fetchone()[0]
        else:
            c.execute("SELECT 1")
            backend = 0
    return JsonResponse({"pid": os.getpid(), "backend": backend})


def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")
