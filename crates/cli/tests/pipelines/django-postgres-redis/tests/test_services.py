import os
import socket
import subprocess

from shop.settings import DATABASE, REDIS


def test_database_has_the_test_database():
    env = dict(os.environ, PGPASSWORD=DATABASE.password)
    out = subprocess.run(
        ["psql", "-h", DATABASE.hostname, "-U", DATABASE.username, "-d", DATABASE.path[1:], "-Atc", "select current_database()"],
        capture_output=True, text=True, env=env, check=True,
    )
    assert out.stdout.strip() == "django_test"


def test_redis_answers():
    with socket.create_connection((REDIS.hostname, REDIS.port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(16).startswith(b"+PONG")
