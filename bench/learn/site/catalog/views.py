"""The five routes of the learning benchmark's site. Each but the home page does lazy work of its
own on its first request in a process, as real sites do: a warm-up plan that names only / leaves
every forked worker to pay for it again.

/            the home page: a small template (the route a first warm-up plan names).
/export.csv  a CSV export that imports a data library (pandas) on first use.
/feed/       an RSS feed: Django's syndication framework, and with it XML and e-mail modules.
/report/     a page with its own template and filters (humanize), compiled on first render.
/admin/login/  Django's admin login page (its templates, forms and widgets).
"""
import datetime

from django.http import HttpResponse
from django.shortcuts import render

PRODUCTS = [{"id": i, "name": f"Product {i}", "price": 1000 + 37 * i, "stock": (i * 7919) % 500} for i in range(1, 31)]
NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def home(request):
    return render(request, "catalog/home.html", {"products": PRODUCTS[:10]})


def export_csv(request):
    import pandas  # lazy: a data library only the export needs

    frame = pandas.DataFrame(PRODUCTS)
    frame["value"] = frame["price"] * frame["stock"]
    return HttpResponse(frame.to_csv(index=False), content_type="text/csv")


def feed(request):
    from django.contrib.syndication.views import Feed  # lazy: the syndication framework

    class ProductFeed(Feed):
        title = "New products"
        link = "/feed/"
        description = "The latest products."

        def items(self):
            return PRODUCTS[:20]

        def item_title(self, item):
            return item["name"]

        def item_description(self, item):
            return f"{item['name']} at {item['price'] / 100:.2f}"

        def item_link(self, item):
            return f"/products/{item['id']}/"

        def item_pubdate(self, item):
            return NOW - datetime.timedelta(days=item["id"])

    return ProductFeed()(request)


def report(request):
    rows = [dict(p, value=p["price"] * p["stock"], updated=NOW - datetime.timedelta(hours=p["id"])) for p in PRODUCTS]
    return render(request, "catalog/report.html", {"rows": rows, "now": NOW})
