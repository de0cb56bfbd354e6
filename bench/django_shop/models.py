"""``Order`` and ``OrderLine`` over the benchmark's tables, as a Django shop would have
them: the line's foreign key cascades in Django (the database constraint is NO ACTION)."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    account_id = models.IntegerField()
    status = models.CharField(max_length=20)
    invoice_address = models.CharField(max_length=400)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)

    class Meta:
        app_label = "django_shop"
        db_table = "orders"
        managed = False


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE)
    product = models.CharField(max_length=200)
    quantity = models.IntegerField()
    price_cents = models.IntegerField()

    class Meta:
        app_label = "django_shop"
        db_table = "order_lines"
        managed = False
