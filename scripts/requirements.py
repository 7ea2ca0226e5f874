"""Print the pip requirements of environment.yml, one per line (the only package list).

A tiny reader for the `- pip:` block, so that setting up needs no YAML library.
"""
import sys
from pathlib import Path

def pip_requirements(path):
    reqs, in_pip, pip_indent = [], False, None
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if item in ("- pip:", "-pip:"):
            in_pip, pip_indent = True, indent
            continue
        if in_pip:
            if indent <= pip_indent:
                in_pip = False
            elif item.startswith("- "):
                reqs.append(item[2:].strip())
    if not reqs:
        sys.exit(f"{path}: no '- pip:' requirements found")
    return reqs

if __name__ == "__main__":
    print("\n".join(pip_requirements(sys.argv[1] if len(sys.argv) > 1 else "environment.yml")))
