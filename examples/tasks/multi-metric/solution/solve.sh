#!/bin/bash
echo 5050 > /app/sum.txt
echo 120 > /app/product.txt
