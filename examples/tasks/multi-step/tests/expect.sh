# Sourced by every step's test.sh (the root tests/ and the step's tests/ both land in /tests).
# expect_notes LINE...: reward 1 when /app/notes.txt holds exactly these lines.
expect_notes() {
  local want have
  want=$(printf '%s\n' "$@")
  have=$(cat /app/notes.txt 2>/dev/null)
  echo "want: $(printf '%s|' "$@")"
  echo "have: $(printf '%s' "$have" | tr '\n' '|')"
  if [ "$have" = "$want" ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
}
