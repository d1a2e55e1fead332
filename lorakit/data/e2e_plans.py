"""Sentence plans: how a writer turns the slots of an MR into sentences.

:class:`PlanWriter` adds sentences to :class:`~lorakit.data.e2e_writer.Writer`'s phrases. The
first sentence introduces the venue with one of several frames, weighted by the writer's style:
``X is a ...``, ``There is a ... called X``, ``X, a ..., serves ...``, ``X, which is near Y, is
...``, ``Close to Y, X is ...``, ``If you are looking for ..., X ...``, ``Looking for ...? Try
X, which ...``, ``Enjoy ... at X``, ``X: ...``. Later sentences go on with a subject ("It",
"They", "The pub", the name), with clauses of their own ("Prices are low and children are
welcome"), or with fragments (terse writers); connectives ("In addition", "However", "What's
more") link them, "However" when bad news follows good.
"""

from __future__ import annotations

from lorakit.data.e2e_writer import RELATIVE, Writer, cap, join_list
from lorakit.data.phrase_table import parse_table

_EVEN_FRAMES = 0.8  # frame weights are evened out like phrase weights (see e2e_writer)
_OPENINGS = {
    "p": "cop 5 exist 3 appos 2 front 3 vp 3 npfirst 1 namerel 2",
    "g": "cop 2 exist 1 appos 3 front 6 vp 2 npfirst 2 namerel 2",
    "c": "cop 2 exist 2 appos 1 front 1 vp 3 if 4 try 2 namerel 1",
    "a": "cop 1 front 2 vp 1 if 2 discover 3 enjoy 4 appos 1",
    "t": "cop 1 colon 7 vp 2 appos 1",
}
_ADDITIVE = (
    "p:Also|c:Also|g:In addition|g:Additionally|g:Moreover|c:What's more|"
    "a:What's more|c:Plus|a:Plus|c:On top of that|a:And|g:Furthermore|c:Oh, and|"
    "a:On top of this|p:In addition"
)
_CONNECTIVES = {
    "+": _ADDITIVE,
    "++": _ADDITIVE + "|a:Better still|a:Best of all|c:Even better",
    "-": "p:However|g:However|t:However|c:Unfortunately|c:Sadly|g:That said|"
    "c:That said|a:Please note that",
}
_ENDINGS = {
    "c": "is worth a visit|is the place to go|is a good choice|could be just what you "
    "need|is a safe bet|is well worth a look|should be on your list",
    "a": "is the place for you|has everything you need|is waiting for you|is ready to welcome you",
}
_SUBJECTS = parse_table("""
np: It | 5 g5 t10
np: NAME | 4
np: This establishment | 0 g3
np: This gem | 0 a2
np: The place | 0 c2
np: They | 4 g0 c4 a1 t0""")["np"]


class PlanWriter(Writer):
    """A :class:`Writer` that also plans sentences: the opening one and those that follow."""

    def opening(self, group: list[str]) -> tuple[str, list[str]]:
        """The first sentence: introduces the name and says slots of ``group``.

        Returns the sentence and the slots of ``group`` it left for the next sentence.
        """
        rng, name = self.rng, self.name
        eat = ["eatType"] if "eatType" in group else []
        others = [s for s in group if s != "eatType"]
        spec = _OPENINGS[self.style].split()
        frames = dict(zip(spec[::2], map(int, spec[1::2])))
        if eat:
            frames.pop("vp", None)
        if len(others) < 1 + (not eat):
            for frame in ("appos", "npfirst", "colon", "namerel"):
                frames.pop(frame, None)
        if not any(self.has(s, "front") for s in others):
            frames.pop("front", None)
        if "food" not in others:
            frames.pop("enjoy", None)
        if self.style == "a" and len(others) < 2:  # "Looking for X? Try Y, which ..."
            frames.pop("if", None)
        frame = rng.choices(list(frames), [v**_EVEN_FRAMES for v in frames.values()])[0]
        lead = ""
        if frame == "front":
            before = others
            lead, others = self.front(others)
            place = all(s in ("area", "near") for s in before if s not in others)
            frame = rng.choices(
                ["cop", "vp", "exist"], [3, 2 * (not eat and bool(others)), (1 + bool(eat)) * place]
            )[0]
        if frame == "namerel":  # "X, which is near Y, is a pub serving ..."
            lead = f"{name}, which {self.predicates(others[-1:])},"
            others, frame = others[:-1], "cop" if eat or len(others) > 1 else "vp"
        if frame == "enjoy":
            lead = f"Enjoy {self.say('food', 'np')} at {name}"
            others = [s for s in others if s != "food"]
            frame = "enjoy" if eat or others else "done"
        if frame == "if" and self.style == "a" and len(others) > 1:  # the answer says a slot
            others, later_first = others[:-1], others[-1:]
        else:
            later_first = []
        if frame in ("cop", "exist"):
            k = min(len(others), rng.choice([1, 2, 2, 3]))
        elif frame in ("appos", "npfirst"):
            k = min(len(others) - 1, rng.choice([0, 1, 1, 2]) if eat else rng.choice([1, 2]))
        else:
            k = min(len(others), 3)
        cut = len(others) if len(others) - k <= 3 else k + 2  # never leave one slot over
        in_np, rest, later = eat + others[:k], others[k:cut], later_first + others[cut:]
        called = rng.choice(["called", "named"])
        if frame == "done":
            text, rest = "", []
        elif frame == "vp":
            subject = "" if lead.endswith(",") else f"{name} "
            text, rest, later = f"{subject}{self.predicates(others[:3])}", [], others[3:]
        elif frame in ("if", "discover", "try", "colon", "enjoy"):
            np_ = self.noun_phrase(in_np, det=frame != "colon", max_pre=2 + (frame == "colon"))
            if frame == "if":
                text = self._looking_for(np_)
            elif frame == "discover":
                text = f"{rng.choice(['Discover', 'Welcome to', 'Visit'])} {name}, {np_}"
            else:
                text = {"colon": f"{name}: {np_}", "try": f"Try {name}, {np_}", "enjoy": np_}[frame]
            rest, later = [], rest + later
        elif frame == "appos":
            text, rest = f"{name}, {self.noun_phrase(in_np)}, {self.predicates(rest)}", []
        elif frame == "npfirst":
            np_ = cap(self.noun_phrase(in_np, rel_ok=False))
            text, rest = f"{np_} {called} {name} {self.predicates(rest)}", []
        else:
            np_ = self.noun_phrase(in_np, rel_ok=frame == "cop")
            subject = "is" if lead.endswith(",") else f"{name} is"
            text = (
                f"{subject} {np_}"
                if frame == "cop"
                else f"{'there' if lead else 'There'} is {np_} {called} {name}"
            )
        plain = not any(f" {r}" in text for r in RELATIVE)
        if rest and not plain:  # "a pub where prices are low and ..." would misattach
            rest, later = [], rest + later
        if rest:
            link = rng.choices(
                [" and ", ", which ", " that "],
                [
                    3 * (len(rest) == 1 and frame == "cop"),
                    2 * plain,
                    2 * (plain and frame == "cop"),
                ],
            )
            text += link[0] + self.predicates(rest)
        text = f"{lead} {text}" if lead.endswith(",") else ", ".join(x for x in (lead, text) if x)
        if later and frame == "if" and text.endswith(name):  # "Look no further than X, which"
            text += ", which " + self.predicates(later[:2])
            later = later[2:]
        return text, later

    def _looking_for(self, np_: str) -> str:
        ending = self.rng.choice(_ENDINGS[self.style].split("|"))
        if self.style == "a":
            verb = self.rng.choice(["Look no further than", "Try", "Visit", "Come to"])
            return f"Looking for {np_}? {verb} {self.name}"
        verb = self.rng.choice(["are looking for", "fancy", "are after", "want"])
        return f"If you {verb} {np_}, {self.name} {ending}"

    def follow(self, group: list[str], before: int) -> str:
        """A later sentence saying the slots of ``group``; ``before``: polarity so far."""
        rng, style = self.rng, self.style
        frames = {"subj": 6}
        if len(group) <= 2 and all(self.has(s, "clause") for s in group):
            frames["clause"] = 2
        if style in "at" and all(self.has(s, "np") for s in group):
            frames["expect"] = 2
        if style == "t" and all(self.has(s, "adj") for s in group):
            frames["frag"] = 2
        frame = rng.choices(list(frames), [v**_EVEN_FRAMES for v in frames.values()])[0]
        signs = [self.sign([s]) for s in group]
        if frame == "clause":
            clauses = [self.say(s, "clause") for s in group]
            if len(clauses) == 2 and clauses[0].split()[:2] == clauses[1].split()[:2]:
                clauses[1] = (
                    "it is " + self.say(group[1], "adj")
                    if self.has(group[1], "adj")
                    else clauses[1]
                )
            return cap(join_list(clauses, signs, rng))
        if frame == "expect":
            return "Expect " + join_list([self.say(s, "np") for s in group], signs, rng)
        if frame == "frag":
            return cap(join_list([self.say(s, "adj") for s in group], signs, rng))
        subject = self.subject()
        connective = ""
        if rng.random() < 0.3:
            sign = self.sign(group)
            kind = "-" if sign < 0 < before else "++" if sign > 0 else "+"
            options = [c[2:] for c in _CONNECTIVES[kind].split("|") if c[0] == style]
            connective = rng.choice(options) if options else ""
            if connective:
                connective += " " if connective in ("And", "Oh, and", "Please note that") else ", "
        also = not connective and rng.random() < 0.25
        if connective and subject != self.name:
            subject = subject[:1].lower() + subject[1:]
        plural = subject.lower() == "they"
        return f"{connective}{subject} {self.predicates(group, also, plural)}"

    def subject(self) -> str:
        options = list(_SUBJECTS)
        if self.said_type or "eatType" not in self.slots:
            head = self.head()
            options += [(f"The {head}", (2, 2, 2, 2, 1)), (f"This {head}", (1, 1, 1, 2, 0))]
        return (self.pick(options) or "It").replace("NAME", self.name)
