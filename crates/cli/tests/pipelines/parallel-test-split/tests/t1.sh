test $(( 1 * 2 )) -eq 2 && echo t1 ok
