test $(( 5 * 2 )) -eq 10 && echo t5 ok
