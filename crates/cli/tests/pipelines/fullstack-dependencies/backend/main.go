package main

import "fmt"

func main() { fmt.Println(greeting()) }

func greeting() string { return "hi" }
