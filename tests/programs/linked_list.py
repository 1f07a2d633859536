"""Build a linked list of N nodes (each an instance with .next and .value)
and write one snapshot of this process with memdiag.dump.

    python tests/programs/linked_list.py OUT.snap N

The head is __main__.state['head']; node k is k hops of .next below it.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import memdiag  # noqa: E402


class Node:
    def __init__(self, value, next_node):
        self.value = value
        self.next = next_node


state = {"head": None}


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    head = None
    for k in range(n - 1, -1, -1):
        head = Node(k, head)
    state["head"] = head
    del head
    memdiag.dump(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
