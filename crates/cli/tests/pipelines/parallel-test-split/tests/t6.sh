test $(( 6 * 2 )) -eq 12 && echo t6 ok
