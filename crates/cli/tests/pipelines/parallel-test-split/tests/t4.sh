test $(( 4 * 2 )) -eq 8 && echo t4 ok
