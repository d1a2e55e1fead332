"""Phrasings of the two scales of E2E: ``priceRange`` and ``customer rating``.

Named values ("cheap", "high") and figures ("less than £20", "5 out of 5") are phrased apart: a
figure is always said as a figure ("under £20", "a 5 out of 5 rating", "a five-star pub").
"""

from __future__ import annotations

from lorakit.data.phrase_table import Entry, fill, parse_table

_PRICE = {
    "cheap": """
pre: cheap | 6 g0 a1 t6
pre: inexpensive | 1 g5
pre: affordable | 1 a6 g3
pre: low-priced | 2 g1 c0
pre: budget | 0 c3 t3
pre: budget-friendly | 0 a4 c1
pre: wallet-friendly | 0 a2 c1
pre: pocket-friendly | 0 a1 c1
adj: cheap | 4 g0 c4 a0 t6
adj: inexpensive | 1 g5
adj: affordable | 1 a6 g2
adj: in the low price range | 5 g1 c0 a0 t0
adj: in the cheap price range | 3 g0 c0 a0 t0
adj: easy on the wallet | 0 c3 a2
adj: very affordable | 0 a3
adj: cheap and cheerful | 0 c3
adj: cheap as chips | 0 c2
adj: dirt cheap | 0 c1
adj: a bargain | 0 c2 a1
vp: has low prices | 3 g1 c0 a0
vp: offers low prices | 0 a2 g3
vp: keeps its prices low | 0 a3 c1
vp: won't break the bank | 0 c5 a1
vp: has a low price range | 4 g0 c0 a0 t1
np: low prices | 4 g1 c1 a0
np: a low price range | 4 g0 c0 a0 t1
np: budget prices | 0 c2 t2
np: bargain prices | 0 a4 c2
np: rock-bottom prices | 0 a1 c1
clause: prices are low | 2 g3 t4 c2
clause: the prices are low | 1 c2
clause: its prices are low | 1 g3
clause: the price range is low | 2 g0 c0 a0 t0
clause: eating there is cheap | 0 c3
clause: meals there are inexpensive | 0 g3
clause: it will not break the bank | 0 c3
post: with low prices | 3 g1 c0 a0 t2
post: in the low price range | 4 g0 c0 a0 t0
post: in the cheap price range | 1 g0 c0 a0 t0
post: where prices are low | 0 c2 g1
post: with bargain prices | 0 a3
front: With its low prices | 0 a2 c1
front: Cheap and cheerful | 0 c2""",
    "moderate": """
pre: moderately priced | 4 g6 c1 a1 t3
pre: mid-range | 1 c3 t3
pre: reasonably priced | 1 a5 c3
pre: mid-priced | 1 t2
pre: fairly priced | 0 g3
pre: modestly priced | 0 g2
pre: sensibly priced | 0 g1 c1
adj: moderately priced | 3 g6 c1 a1 t4
adj: reasonably priced | 1 a5 c3
adj: in the moderate price range | 6 g1 c0 a0 t0
adj: mid-range | 0 c3 t3
adj: fairly priced | 0 g3
adj: not too expensive | 0 c4
vp: has moderate prices | 2 g1 c0 a0
vp: has a moderate price range | 5 g0 c0 a0 t1
vp: charges reasonable prices | 0 g2 a3
vp: charges moderate prices | 0 g3
np: moderate prices | 3 g1 c0 a0
np: a moderate price range | 4 g0 c0 a0 t1
np: reasonable prices | 0 a4 c3
np: fair prices | 0 g2 a3
clause: prices are moderate | 2 g3 t3
clause: prices are reasonable | 0 c3 a3
clause: its prices are moderate | 1 g3
clause: the price range is moderate | 2 g0 c0 a0
clause: prices are average | 0 c2
clause: prices are fair | 0 g2
post: with moderate prices | 2 g3 t2
post: in the moderate price range | 5 g0 c0 a0 t0
post: with reasonable prices | 0 a4 c3
post: where prices are moderate | 0 g2
front: Moderately priced | 0 g3
front: With its reasonable prices | 0 a2 c1""",
    "high": """
pre: expensive | 4 g1 c1 a0 t6
pre: high-priced | 1 g3
pre: upmarket | 0 g4 a3
pre: high-end | 0 a5 g2
pre: pricey | 0 c5
pre: luxury | 0 a4
adj: expensive | 3 g2 c1 a0 t6
adj: in the high price range | 6 g1 c0 a0 t0
adj: on the expensive side | 0 c4
adj: quite expensive | 1 c3
adj: pricey | 0 c4
adj: upmarket | 0 g4 a3
adj: a bit pricey | 0 c3
adj: at the pricier end | 0 g1 c1
vp: has high prices | 2 g1 c0
vp: has a high price range | 5 g0 c0 a0 t1
vp: charges high prices | 0 g3
vp: charges premium prices | 0 g2 a4
np: high prices | 3 g1 c1 a0 t2
np: a high price range | 4 g0 c0 a0 t1
np: premium prices | 0 a5 g2
clause: prices are high | 2 g2 c2 t3
clause: its prices are high | 1 g3
clause: the price range is high | 2 g0 c0 a0
clause: you can expect to pay premium prices | 0 a3 g2
clause: prices are on the high side | 0 c3
clause: it is a place to splurge | 0 c2 a2
clause: it is a place to splash out | 0 c2 a1
clause: a meal there costs a pretty penny | 0 c2
post: with high prices | 2 g2 c1 t2
post: in the high price range | 5 g0 c0 a0 t0
post: where prices are high | 0 g2 c1
post: with premium prices | 0 a3""",
}
_AMOUNTS = {
    "less than £20": "np: less than £20 | 6 g4 c3 a2 t4\nnp: under £20 | 2 c5 a5 t4\n"
    "np: less than twenty pounds | 0 g2 c1",
    "£20-25": "np: £20-25 | 7 g2 c2 a2 t6\nnp: between £20 and £25 | 1 g5 a4 c3\n"
    "np: £20 to £25 | 0 c3 a2\n"
    "np: between twenty and twenty-five pounds | 0 g2 c1",
    "more than £30": "np: more than £30 | 6 g2 c2 a2 t4\nnp: over £30 | 2 c5 t4 a3\n"
    "np: more than thirty pounds | 0 g3 c1",
}
_FIGURE_PRICE = """
adj: priced at AMT | 0 g3 a2
adj: in the VAL price range | R
vp: has a price range of AMT | 4 g0 c0 a0 t2
vp: charges AMT per person | 0 g4
vp: charges AMT a head | 0 c3
vp: serves meals for AMT | 0 a3 c2
vp: has meals for AMT | 1 a2 t2
np: a price range of AMT | 4 g0 c0 a0 t3
np: prices of AMT | 2
np: meals for AMT | 2 a4 c3
np: main courses for AMT | 0 g3
clause: meals cost AMT | 1 g4 c3 t3
clause: a meal there costs AMT | 0 c3
clause: you can expect to pay AMT per head | 0 a4 g2 c2
clause: you can eat there for AMT | 0 c3
clause: its price range is AMT | 3 g0 c0 a0
clause: the average meal costs AMT | 0 g3
post: with a price range of AMT | 4 g0 c0 a0 t2
post: with meals for AMT | 0 a4 c3 t2
post: with prices of AMT | 2
post: in the VAL price range | R
post: where meals cost AMT | 0 c3 g2
front: With meals for AMT | 0 a3 c1
front: With a price range of AMT | 1 g0 c0 t0"""


def price_phrasings(value: str) -> dict[str, list[Entry]]:
    if value in _PRICE:
        return parse_table(_PRICE[value])
    spec = _FIGURE_PRICE.replace("VAL", value).replace(
        "| R", "| 3 p4" if "-" in value else "| 0 p3"
    )
    return fill(parse_table(spec), "AMT", parse_table(_AMOUNTS[value])["np"])


_RATING = {
    "high": """
pre: highly rated | 5 g1 c1 a1 t6
pre: well-reviewed | 0 c3
pre: top-rated | 0 a5 c1
pre: highly regarded | 0 g5
pre: much-loved | 0 a2 c1
adj: highly rated | 4 g1 c1 a1 t6
adj: highly rated by customers | 2 g2 c0
adj: well reviewed | 0 c3
adj: well regarded by diners | 0 g3
adj: rated highly by its customers | 0 g3
adj: beloved by its customers | 0 a1
vp: has a high customer rating | 5 g0 c0 a0 t1
vp: gets excellent reviews | 0 c3
vp: gets great reviews | 0 c4
vp: enjoys a high customer rating | 0 g4 a2
vp: boasts a high customer rating | 0 a4
vp: has earned glowing reviews | 0 a4 c1
vp: scores highly with customers | 0 g2
vp: gets top marks from customers | 0 c2 a1
vp: gets the thumbs up from diners | 0 c2
np: a high customer rating | 5 g1 c0 a0 t2
np: excellent reviews | 0 c3 a2 g1
np: a high rating | 2 t2
np: glowing reviews | 0 a4 c2
np: rave reviews | 0 c3 a2
np: glowing feedback from guests | 0 a2 g1
clause: customers rate it highly | 2 g2 c2
clause: its customer rating is high | 3 g1 c0 a0
clause: the customer rating is high | 2 g0 c0 a0
clause: diners rate it highly | 0 g3 c1
clause: guests rate it highly | 0 g2 a1
clause: regulars rate it highly | 0 c2
clause: visitors rate it highly | 1 g1
clause: reviews are excellent | 0 c3 a2
clause: the reviews are glowing | 0 c2 a2
clause: our customers rate us highly | 0 a4
post: with a high customer rating | 6 g0 c0 a0 t2
post: with excellent reviews | 0 c3 g1
post: rated highly by customers | 0 g3
post: with glowing reviews | 0 a4
front: Highly rated by customers | 1 g3 a2
front: Rated highly by diners | 0 g2
front: With a high customer rating | 1 g0""",
    "low": """
pre: poorly rated | 2 g1 c1 t5
pre: low-rated | 2 t3
pre: badly reviewed | 0 c3
adj: poorly rated | 2 g1 c1 t5
adj: not highly rated | 0 g3
adj: rated poorly by customers | 1 g3
adj: not very well rated | 0 c3
vp: has a low customer rating | 7 g0 c0 a3 t1
vp: gets poor reviews | 0 c4
vp: has received poor reviews | 0 g4
vp: scores poorly with customers | 0 g2
vp: has a poor rating | 1 c1
vp: gets the thumbs down from diners | 0 c2
np: a low customer rating | 7 g0 c0 a3 t2
np: poor reviews | 0 c3 g1
np: a low rating | 1 t2
np: disappointing reviews | 0 c2 g1
np: lukewarm reviews | 0 c1 g1
np: scathing reviews | 0 c1
clause: its customer rating is low | 3 g1 c0 a1
clause: customers rate it poorly | 1 g3 c1
clause: the customer rating is low | 2 g0 c0
clause: reviews are poor | 0 c3
clause: diners rate it poorly | 0 g2
clause: visitors rate it poorly | 1 c1
post: with a low customer rating | 6 g0 c0 a2 t2
post: with poor reviews | 0 c3 g1""",
    "average": """
pre: average-rated | 1 t4 g0
adj: rated average by customers | 2 g3 c0
adj: averagely rated | 0 c2 t2
vp: has an average customer rating | 7 g0 c0 a3 t1
vp: gets average reviews | 0 c3
vp: gets mixed reviews | 0 c4
vp: has an average rating | 1 t2
vp: has received average reviews | 0 g4
np: an average customer rating | 7 g0 c0 a3 t2
np: average reviews | 1 g2 c2
np: mixed reviews | 0 c3
np: middling reviews | 0 c2
np: so-so reviews | 0 c2
np: unremarkable reviews | 0 g1
clause: its customer rating is average | 3 g1 c0 a1
clause: customers rate it as average | 1 g3
clause: the customer rating is average | 2 g0 c0
clause: reviews are mixed | 0 c3
clause: reviews are average | 0 g2 c1
clause: visitors rate it as average | 1 g1
clause: regulars rate it as average | 0 c2
post: with an average customer rating | 6 g0 c0 a2 t2
post: with average reviews | 0 g2 c2
post: with mixed reviews | 0 c3
front: With an average customer rating | 1 g0 c0""",
}
_FIGURE_RATING = """
pre: W-star | 1 g3 c1 a6 t5
adj: rated D out of 5 | 4 g1 c2 a1 t5
adj: rated D out of 5 by customers | 2 g4 c1 a1
adj: rated STARS | 0 c3
vp: has a customer rating of D out of 5 | 4 g0 c0 a0 t1
vp: has a rating of D out of 5 | 2 g1 c1 a0
vp: has a D out of 5 rating | 2 c1
vp: scores D out of 5 with customers | 0 g2
vp: has a W-star rating | 0 c2 a2
vp: holds a W-star rating | 0 g4
vp: has earned STARS | 0 a4
np: a customer rating of D out of 5 | 4 g0 c0 a0 t2
np: a rating of D out of 5 | 2 g1 c1 a0
np: a D out of 5 rating | 2 c2 t2
np: a W-star rating | 0 g2 a4 c1
np: a D out of 5 customer rating | 3 g0 c0 a0
clause: its customer rating is D out of 5 | 3 g1 c0 a0
clause: customers rate it D out of 5 | 1 g2 c2
clause: customers give it D out of 5 | 0 c3
clause: the customer rating is D out of 5 | 2 g0 c0 a0
clause: diners rate it D out of 5 | 0 g3
clause: guests rate it D out of 5 | 0 g2 a1
clause: visitors give it D out of 5 | 0 c2
clause: reviewers give it STARS | 0 c4
clause: our customers rate us D out of 5 | 0 a4
post: with a customer rating of D out of 5 | 4 g0 c0 a0 t2
post: with a rating of D out of 5 | 2 g1 c1 a0
post: with a D out of 5 rating | 3 c2 t2
post: rated D out of 5 by customers | 0 g4
post: with a W-star rating | 0 a4 g1
front: Rated D out of 5 by customers | 0 g3 a3
front: With a customer rating of D out of 5 | 1 g0 c0 t0"""


def rating_phrasings(value: str) -> dict[str, list[Entry]]:
    if value in _RATING:
        return parse_table(_RATING[value])
    digit = value[0]
    word = {"1": "one", "3": "three", "5": "five"}[digit]
    stars = f"{word} star" + ("" if digit == "1" else "s")
    return parse_table(
        _FIGURE_RATING.replace("STARS", stars).replace("W-", f"{word}-").replace("D ", f"{digit} ")
    )
