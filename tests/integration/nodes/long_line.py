"""Prints one 200 000-character line, then a short one, without ever creating a Node."""

print("A" * 200_000)
print("after the long line")
