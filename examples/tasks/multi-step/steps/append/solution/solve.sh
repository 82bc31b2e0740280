#!/bin/bash
cat /app/suffix.txt >> /app/notes.txt
