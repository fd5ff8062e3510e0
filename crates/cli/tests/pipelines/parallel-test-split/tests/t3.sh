test $(( 3 * 2 )) -eq 6 && echo t3 ok
