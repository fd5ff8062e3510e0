set -eu
n=$(mysql -h 127.0.0.1 -u "$DB_USER" -psecret "$DB_NAME" -N -e 'select count(*) from users')
test "$n" = 2 && echo "users: $n"
