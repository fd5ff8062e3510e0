import os
from urllib.parse import urlparse

DATABASE = urlparse(os.environ.get("DATABASE_URL", "postgres://localhost/shop"))
REDIS = urlparse(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
