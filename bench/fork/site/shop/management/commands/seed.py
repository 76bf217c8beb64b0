from decimal import Decimal

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from shop.models import Category, Product


class Command(BaseCommand):
    help = "Fill the shop with 10 categories and 500 products (idempotent)."

    def handle(self, *args, **options):
        if Product.objects.exists():
            return
        cats = [Category.objects.create(name=f"category {i}") for i in range(10)]
        Product.objects.bulk_create([
            Product(name=f"product {i}", category=cats[i % 10], price=Decimal(i % 97) + Decimal("0.99"), stock=i * 7 % 1000)
            for i in range(500)
        ])
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@shop.example", "bench-only")
