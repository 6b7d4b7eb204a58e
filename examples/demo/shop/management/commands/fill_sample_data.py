"""Fill the demo database with awkward-but-valid sample data.

The rows are meant to catch backup/restore bugs: NULL vs empty values, non-ASCII and 4-byte
characters, every byte value 0-255, nested JSON, DST-edge timestamps with microseconds,
boundary decimals. Output is deterministic for a given --seed; every run *adds* rows
(numbering continues from the current row count), so it can be run repeatedly.
"""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.sessions.backends.db import SessionStore
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from shop.models import Category, Product

CATEGORY_NAMES = (
    "Books",
    "Kavos pupelės",
    "Électronique",
    "Игрушки",
    "文具",
    "🎲 Games",
    "Ελληνικά προϊόντα",
    "חנות",
)

ADJECTIVES = ("Žalias", "Rapide", "Ürün", "精致", "Tiny", "Сладкий", "O'Brien's", 'The "Best"')
NOUNS = (
    "lamp ☕",
    "notebook 📓",
    "茶杯",
    "chair",
    "Schrödinger box",
    "кружка",
    "🚀 rocket",
    "وعاء",
)

DESCRIPTIONS = (
    None,
    "",
    "Plain ASCII description.",
    "Multi-line\nwith\ttabs,\r\nCRLF, 'single' and \"double\" quotes, back\\slash; -- not SQL",
    "Unicode: Ąčęėįšųūž ÆØÅ ß ﬁ e\u0301 👩\u200d👩\u200d👧 שלום مرحبا 日本語テキスト 한국어",
    "A line that looks like a COPY terminator follows\n\\.\nand the text goes on.",
    "Percent % and braces {} and NUL-free control chars \x01\x1f",
)

# Timestamps around Europe/Vilnius DST switches (spring gap, autumn overlap), in UTC.
EDGE_TIMES = (
    datetime(2024, 3, 31, 0, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 3, 31, 1, 0, 0, 1, tzinfo=UTC),
    datetime(2024, 10, 27, 0, 30, 0, 123456, tzinfo=UTC),
    datetime(2024, 10, 27, 1, 30, 0, 654321, tzinfo=UTC),
)
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

MAX_PRICE = Decimal("99999999.99")  # max_digits=10, decimal_places=2


class Command(BaseCommand):
    help = "Add deterministic sample categories, products and sessions to the demo database."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=200, help="Products to add (default: 200).")
        parser.add_argument("--seed", type=int, default=1234, help="Random seed (default: 1234).")
        parser.add_argument(
            "--sessions",
            type=int,
            default=10,
            help="Sessions to create, half of them already expired (default: 10).",
        )

    def handle(self, *args, rows, seed, sessions, **options):
        if rows < 0 or sessions < 0:
            raise CommandError("--rows and --sessions must be >= 0")
        rng = random.Random(seed)

        with transaction.atomic():
            categories = [Category.objects.get_or_create(name=name)[0] for name in CATEGORY_NAMES]
            start = Product.objects.count()
            products = [self._product(rng, start + i, categories) for i in range(rows)]
            Product.objects.bulk_create(products, batch_size=100)

        expired = sessions // 2
        for i in range(sessions):
            self._session(i, expired=i < expired)

        self.stdout.write(
            self.style.SUCCESS(
                f"Added {rows} products in {len(categories)} categories and {sessions} "
                f"sessions ({expired} expired). Products total: {Product.objects.count()}."
            )
        )

    def _product(self, rng, n, categories):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} #{n}"
        return Product(
            category=categories[n % len(categories)],
            name=name,
            description=DESCRIPTIONS[n % len(DESCRIPTIONS)],
            price=self._price(rng, n),
            attributes=self._attributes(rng, n, name),
            thumbnail=self._thumbnail(rng, n),
            created=self._created(rng, n),
            is_active=rng.random() < 0.8,
        )

    @staticmethod
    def _price(rng, n):
        if n % 50 == 0:
            return Decimal("0.00")
        if n % 50 == 1:
            return MAX_PRICE
        return Decimal(rng.randint(1, 9_999_999)) / 100

    @staticmethod
    def _attributes(rng, n, name):
        if n % 25 == 0:
            return {}
        return {
            "sku": f"SKU-{n:06d}",
            "label": name,
            "tags": rng.sample(["new", "sale", "eco", "🔥", "限定", "ąčę", "with space"], k=3),
            "dimensions": {
                "w": round(rng.uniform(1, 100), 2),
                "h": round(rng.uniform(1, 100), 2),
                "unit": "cm",
            },
            "stock": {
                "warehouses": [
                    {"code": code, "qty": rng.randint(0, 500)}
                    for code in rng.sample(["VNO", "KUN", "RIX", "TLL"], k=2)
                ],
                "backorder": rng.random() < 0.3,
            },
            "discontinued": None,
            "quote": "He said \"ok\" \\ 'fine'",
            "big_int": 2**53 - 1,
        }

    @staticmethod
    def _thumbnail(rng, n):
        kind = n % 5
        if kind == 0:
            return None
        if kind == 1:
            return b""
        if kind == 2:
            return bytes(range(256))
        return rng.randbytes(rng.randint(16, 2048))

    @staticmethod
    def _created(rng, n):
        if n % 40 < len(EDGE_TIMES):
            return EDGE_TIMES[n % 40]
        return BASE_TIME + timedelta(
            seconds=rng.randint(0, 365 * 24 * 3600), microseconds=rng.randint(0, 999_999)
        )

    @staticmethod
    def _session(i, *, expired):
        store = SessionStore()
        store["visitor"] = f"visitor-{i}"
        store["cart"] = [{"product": i, "qty": i % 3 + 1}]
        now = timezone.now()
        if expired:
            store.set_expiry(now - timedelta(days=i + 1))
        else:
            store.set_expiry(now + timedelta(days=14 + i))
        store.save()
