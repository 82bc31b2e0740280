#!/bin/bash
echo ready > status.txt
