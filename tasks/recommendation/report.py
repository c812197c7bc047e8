"""The recommender's sample report: a Markdown table of a few users' lists beside the popularity baseline."""


def sample_table(info, users, ours, popular, wanted, seen):
    """A Markdown table of a few users' recommendations, with titles and held-out hits marked."""

    def show(item):
        identifier = info.items[item - 1] if item else "(unknown item)"
        title = info.titles[item - 1] if info.titles and item else ""
        return f"{identifier} {title}".strip().replace("|", "/")  # a pipe would break the table

    lines = [
        "| user | rated in training | recommended (* = held-out hit) | popularity baseline | held out |",
        "|---|---|---|---|---|",
    ]
    for row, user in enumerate(users):
        history = "; ".join(show(item) for item in sorted(seen[row])[:3])
        mine = "; ".join(("*" if item in wanted[row] else "") + show(item) for item in ours[row][:5])
        baseline = "; ".join(("*" if item in wanted[row] else "") + show(item) for item in popular[row][:5])
        held = "; ".join(show(item) for item in sorted(wanted[row])[:3])
        name = info.users[user - 1] if user else "(unknown user)"
        lines.append(f"| {name} | {history} | {mine} | {baseline} | {held} |")
    return "\n".join(lines) + "\n"
