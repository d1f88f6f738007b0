"""One APIRouter per concern; ``service/app.py`` includes them. A new route is a new module here."""
