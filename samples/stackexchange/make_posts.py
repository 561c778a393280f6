"""Writes the sample StackExchange sites: Posts.xml files in the dump's real
schema (attributes as in the 2024 dump), with text written for llamaflow.

Run from this folder: python3 make_posts.py
"""

from xml.sax.saxutils import quoteattr

SITES = {
    "cooking.stackexchange.com": [
        # (Id, PostTypeId, ParentId, Score, Title, Body)
        (1, 1, None, 14, "Why does my bread not rise?",
         "<p>I followed a simple recipe but the dough stays flat after two hours.</p>\n"
         "<p>What I used:</p>\n<ul>\n<li>500 g flour</li>\n<li>7 g dry yeast</li>\n<li>350 ml <em>hot</em> water</li>\n</ul>\n"),
        (2, 2, 1, 9, None,
         "<p>Hot water kills yeast. Keep the water below 45 &deg;C; lukewarm is enough.</p>\n"),
        (3, 2, 1, 10, None,
         "<p>Two things to check:</p>\n<ol>\n<li>the yeast is not past its date;</li>\n"
         "<li>the room is warm enough (about 24 &deg;C).</li>\n</ol>\n<p>Proof the yeast in a cup first.</p>\n"),
        (4, 2, 1, -1, None, "<p>Add more sugar.</p>\n"),
        (5, 1, None, 3, "How long do I rest a steak?",
         "<p>Recipes say anything from 2 to 15 minutes. Does it matter?</p>\n"),
        (6, 2, 5, 5, None,
         "<p>Rest it about half as long as it cooked; the juices settle and less ends up on the board.</p>\n"),
        (7, 4, None, 0, None, "<p>Questions about baking bread, cakes and pastry.</p>\n"),
        (8, 5, None, 0, None, "<p>Baking is cooking with dry heat in an oven.</p>\n"),
        (9, 1, None, 7, "Convert a recipe from cups to grams",
         "<p>Is there a way to script this? I tried:</p>\n"
         "<pre><code>def cups_to_grams(cups, density):\n    return cups * 236.6 * density\n</code></pre>\n"
         "<p>but flour gives odd numbers.</p>\n"),
        (10, 2, 9, 12, None,
         "<p>Flour's density varies with how it is packed, so weigh it once and keep that figure. "
         "For water, <code>density = 1.0</code> is right.</p>\n"),
        (11, 1, None, 0, "Is it safe to refreeze thawed chicken?",
         "<p>I thawed chicken in the fridge and did not cook it. Can it go back in the freezer?</p>\n"),
    ],
    "gardening.stackexchange.com": [
        (1, 1, None, 6, "Tomato leaves turning yellow",
         "<p>The lower leaves of my tomato plants turn yellow and drop. The plants are in pots on a balcony.</p>\n"),
        (2, 2, 1, 8, None,
         "<p>Usually a lack of nitrogen or watering too much. Check that the pots drain, "
         "then feed every two weeks.</p>\n"),
        (3, 2, 1, 2, None, "<p>Some yellowing of the oldest leaves is normal as the plant grows.</p>\n"),
        (4, 1, None, 4, "When to plant garlic?",
         "<p>I live in a place with cold winters. Autumn or spring?</p>\n"),
        (5, 2, 4, 11, None,
         "<p>Autumn, a few weeks before the ground freezes: garlic needs the cold to form cloves.</p>\n"),
        (6, 1, None, 1, "Can I compost citrus peel?",
         "<p>I read that citrus harms worms.</p>\n"),
    ],
    "bicycles.stackexchange.com": [
        (1, 1, None, 5, "How often should I oil the chain?",
         "<p>I ride about 100 km a week, mostly dry roads.</p>\n"),
        (2, 2, 1, 4, None,
         "<p>When it starts to sound dry, or every 300 km or so. Wipe off the excess.</p>\n"),
    ],
}


def row(post):
    pid, ptype, parent, score, title, body = post
    attrs = [("Id", pid), ("PostTypeId", ptype)]
    if parent is not None:
        attrs.append(("ParentId", parent))
    attrs += [("CreationDate", "2024-03-0%dT10:00:00.000" % (pid % 9 + 1)), ("Score", score), ("Body", body)]
    if title is not None:
        attrs += [("Title", title), ("Tags", "|sample|"), ("AnswerCount", 0)]
    attrs.append(("ContentLicense", "CC BY-SA 4.0"))
    return "  <row " + " ".join("%s=%s" % (k, quoteattr(str(v), {"\n": "&#xA;"})) for k, v in attrs) + " />"


for site, posts in SITES.items():
    lines = ['\ufeff<?xml version="1.0" encoding="utf-8"?>', "<posts>"] + [row(p) for p in posts] + ["</posts>", ""]
    with open(site + ".Posts.xml", "w", encoding="utf-8", newline="\r\n") as f:
        f.write("\n".join(lines))
