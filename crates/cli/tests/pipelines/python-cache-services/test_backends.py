import socket


def ask(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(line)
        return s.recv(64)


def test_memcached_stores():
    assert ask(11211, b"set k 0 0 2\r\nhi\r\n").startswith(b"STORED")


def test_redis_answers():
    assert ask(6379, b"PING\r\n").startswith(b"+PONG")
