test $(( 2 * 2 )) -eq 4 && echo t2 ok
