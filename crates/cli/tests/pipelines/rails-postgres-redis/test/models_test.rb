require "minitest/autorun"
require "socket"
require_relative "../app/order"

class OrderTest < Minitest::Test
  def test_total
    assert_equal 500, Order.new([{ price: 100, qty: 2 }, { price: 300, qty: 1 }]).total
  end

  def test_database_is_there
    out = `psql "#{ENV.fetch("DATABASE_URL")}" -Atc "select current_database()"`
    assert_equal "app_test", out.strip
  end

  def test_redis_is_there
    s = TCPSocket.new("127.0.0.1", 6379)
    s.write("PING\r\n")
    assert_equal "+PONG", s.gets.strip
  ensure
    s&.close
  end
end
