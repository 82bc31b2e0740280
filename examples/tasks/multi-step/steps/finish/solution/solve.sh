#!/bin/bash
cat /app/three.txt >> /app/notes.txt
