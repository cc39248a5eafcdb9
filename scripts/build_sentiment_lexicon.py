"""Build the sentiment lexicon of the ``polarity`` counterfactual strategy (``nda/text/data/``) offline.

Two files, both shipped so the counterfactual needs no NLTK data at run time:

- ``opinion_words.tsv`` -- ``word<TAB>+|-``: the words that make a clause *sentiment-bearing*. The Hu & Liu
  opinion lexicon (Bing Liu, CC BY 4.0; NLTK's ``opinion_lexicon`` corpus) minus ``NOT_OPINION``: words that in
  reviews mostly name a topic, not the reviewer's opinion ("plot", "murder", "hero", "death", "fans"), or that
  are mostly function/intensifier uses ("enough", "right", "pretty", "clearly", "work"). A few review words
  the lexicon lacks or lists with the other sign are added/overridden in ``EXTRA_OPINION`` ("funny" is
  negative in the lexicon, positive in reviews).
- ``sentiment_antonyms.tsv`` -- ``word<TAB>antonym<TAB>pos<TAB>source``: a swap that flips the sentiment of an
  opinion word, always to a word of the *other* polarity. Sources, in priority order:
  ``curated`` (``CURATED`` below: the frequent review words, written by hand with the part of speech that the
  counterfactual checks in context), ``wordnet`` (a direct WordNet antonym of an adjective, adverb or verb
  sense that is in the opposite list; the pair with the highest SemCor count wins), ``affix`` (un-/in-/im-/
  dis-/il-/ir- and -ful/-less pairs that are both opinion words of opposite signs).

Run: ``NLTK_DATA=/work/shared/data/nltk_data python scripts/build_sentiment_lexicon.py``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

WORD = re.compile(r"^[a-z][a-z\-]*[a-z]$")

# Opinion-lexicon words that are topics or function words in reviews: never sentiment-bearing here.
NOT_OPINION = set("""
plot work works worked enough right death dead die dies dying fans fan lead leads leading supporting hero heroes
heroine mystery mysteries crime crimes killer killers killing kill kills killed murder murders murdered hell monster
monsters fiction tension twist twists prison gangster gangsters criminal criminals rape suicide attack attacks
revenge fear fears war die fall falls fell fallen break breaks broke dark darker darkest cold hot top free clear
clearly fairly pretty super wild wildly intense loud quiet fat modern complex complicated mature master award awards
critics critic appeal support variety continuity available concern concerned issue issues conflict struggle
struggles struggling desperate desperately guilty blind broken burn burns burned scream screams sink desert scratch
crush slap trick tricks joke jokes parody irony doubt doubts excuse miss missed missing lost lose loses losing loss
pity thank thanks welcome wonder wonders magic magical fast faster slowly hard harder harden tough sweat
strange strangely odd oddly weird unusual horror horrors shock shocked shocking scary scare scared frightening
creepy spooky haunting haunted evil villain villains monster violent violence bloody blood gore gory deadly fatal
victim victims sick sin sins cry cries crying tears tear sad sadness tragic tragedy tragedies grief pain painful
painfully hurt hurts angry anger mad madness crazy insane insanely cruel brutal brutally nightmare nightmares torture
tortured damn damned dirty naked mistake mistakes trouble troubled conspiracy enemy enemies dangerous danger risk
risky bomb bombs explosion gun guns lie lies liar liars kid kidding joke laugh laughs laughing smile smiles
sympathetic sympathy patient patience lean lucky luck fortune rich poor cheap sharp soft
incredibly remarkably amazingly terribly awfully utterly wickedly seriously extremely absolutely totally really
very truly highly genuinely insanely ridiculously surprisingly strikingly exceptionally perfectly undoubtedly
certainly particularly especially romantic humor humour beauty blah zombie zombies propaganda faith heaven
respect spiritual mysterious exploitation warning freedom peace angel
""".split())
# Sign overrides and review words missing from the lexicon ("+" positive, "-" negative).
EXTRA_OPINION = {
    "funny": "+", "unfunny": "-", "hilarious": "+", "like": "+", "likes": "+", "liked": "+", "well": "+",
    "best": "+", "better": "+", "good": "+", "poor": "-", "poorly": "-", "cheap": "-", "forgettable": "-",
    "unwatchable": "-", "watchable": "+", "predictable": "-", "unpredictable": "+", "derivative": "-",
    "unoriginal": "-", "humorless": "-", "witless": "-", "recommend": "+", "recommended": "+", "must-see": "+",
    "well-made": "+", "well-written": "+", "well-acted": "+", "badly-made": "-", "poorly-written": "-",
    "poorly-acted": "-", "second-rate": "-", "first-rate": "+", "top-notch": "+", "worth": "+", "worthwhile": "+",
    "worthless": "-", "unlikable": "-", "unlikeable": "-", "likable": "+", "likeable": "+", "uninspired": "-",
    "sadly": "-", "happily": "+", "thankfully": "+", "fortunately": "+", "unfortunately": "-", "avoid": "-",
    "avoided": "-", "funniest": "+", "favorite": "+", "favourite": "+", "incredible": "+", "slow": "-",
}
# Opinion words whose WordNet/affix antonym is another sense ("fine" -> "coarse", "fair" -> "unfair"): no swap.
NO_SWAP = {"fair", "clear", "free", "right", "light", "dark", "hot", "cold", "soft", "hard", "sharp",
           "rich", "tough", "easy", "deep", "high", "low", "big", "full", "loose", "tight", "safe", "patient"}

# Hand-written swaps for the frequent review words: word -> (antonym, part of speech). POS: a adjective,
# r adverb, v verb (checked in context), n noun (only after a determiner or an adjective). "_" is a space.
CURATED: dict[str, tuple[str, str]] = {}


def _pairs(pos: str, text: str, symmetric: bool = False) -> None:
    for item in text.split():
        a, b = item.replace("_", " ").split(">")  # "least_funny": a two-word antonym
        CURATED.setdefault(a, (b, pos))
        if symmetric:
            CURATED.setdefault(b, (a, pos))


_pairs("a", """good>bad great>terrible excellent>awful wonderful>terrible amazing>awful fantastic>terrible
awesome>awful terrific>terrible superb>dreadful brilliant>awful outstanding>mediocre exceptional>mediocre
magnificent>dreadful marvelous>dreadful marvellous>dreadful splendid>dreadful spectacular>dismal stunning>dull
breathtaking>dull gorgeous>ugly beautiful>ugly lovely>awful nice>bad perfect>flawed interesting>boring
fascinating>boring intriguing>boring engaging>tedious engrossing>tedious captivating>tedious compelling>tedious
gripping>tedious riveting>tedious exciting>boring thrilling>boring exhilarating>boring entertaining>boring
enjoyable>tedious fun>boring funny>unfunny hilarious>unfunny humorous>humorless amusing>tedious witty>witless
clever>stupid smart>dumb intelligent>stupid insightful>shallow thoughtful>thoughtless fresh>stale
original>derivative creative>derivative inventive>derivative imaginative>unimaginative memorable>forgettable
charming>annoying delightful>dreadful likable>unlikable likeable>unlikeable appealing>unappealing sweet>bitter
cute>annoying warm>cold heartwarming>depressing heartfelt>insincere sincere>insincere genuine>fake
honest>dishonest authentic>fake believable>unbelievable convincing>unconvincing credible>unconvincing
realistic>unrealistic coherent>incoherent strong>weak powerful>weak solid>weak effective>ineffective
impressive>unimpressive remarkable>unremarkable satisfying>unsatisfying worthwhile>worthless worthy>unworthy
successful>unsuccessful competent>incompetent talented>untalented gifted>untalented skilled>unskilled
skillful>inept accomplished>amateurish masterful>clumsy polished>sloppy elegant>clumsy stylish>tacky
poignant>trite profound>shallow meaningful>meaningless pleasant>unpleasant happy>unhappy glad>sorry
popular>unpopular accurate>inaccurate rich>thin vivid>bland colorful>drab colourful>drab lively>dull
energetic>lethargic vibrant>dull exquisite>crude delicate>crude sophisticated>crude easy>hard easier>harder
important>unimportant significant>insignificant positive>negative excited>bored impressed>unimpressed
pleased>displeased satisfied>dissatisfied proud>ashamed inspiring>uninspiring inspired>uninspired
refreshing>stale unique>generic superior>inferior better>worse best>worst finest>worst greatest>worst
top-notch>second-rate first-rate>second-rate well-made>badly-made well-written>poorly-written
well-acted>poorly-acted must-see>skippable watchable>unwatchable brave>cowardly admirable>deplorable
incredible>dreadful favorite>least_favorite favourite>least_favourite funniest>least_funny sorry>glad
cheap>lavish slow>brisk moving>dull fine>poor cool>lame wrong>right worth>not_worth
recommended>not_recommended classic>forgettable flawless>flawed enthralling>tedious absorbing>tedious hypnotic>tedious mesmerizing>tedious
touching>cloying uplifting>depressing""")
_pairs("a", """bad>good terrible>great awful>excellent horrible>wonderful horrid>wonderful dreadful>wonderful
atrocious>excellent appalling>excellent abysmal>excellent lousy>great crappy>great poor>good mediocre>excellent
weak>strong lame>clever stupid>clever dumb>smart idiotic>clever silly>clever ridiculous>sensible absurd>sensible
ludicrous>sensible laughable>credible boring>exciting dull>exciting tedious>engaging tiresome>engaging
bland>vivid dreary>lively annoying>charming irritating>charming obnoxious>charming unpleasant>pleasant
ugly>beautiful disgusting>delightful unbearable>enjoyable unwatchable>watchable pointless>meaningful
meaningless>meaningful worthless>worthwhile useless>useful shallow>profound superficial>profound
predictable>unpredictable cliched>original clichéd>original clichd>original stale>fresh derivative>original
unoriginal>original contrived>natural confusing>clear incoherent>coherent messy>polished sloppy>polished
clumsy>deft awkward>graceful amateurish>polished inept>skillful incompetent>competent cheesy>classy tacky>classy
corny>witty pretentious>unpretentious unconvincing>convincing unbelievable>believable unrealistic>realistic
implausible>plausible disappointing>satisfying disappointed>impressed bored>excited worse>better worst>best
flawed>flawless fake>genuine forgettable>memorable unfunny>funny humorless>funny mindless>thoughtful
uninspired>inspired uninteresting>interesting unimpressive>impressive unlikable>likable unlikeable>likeable
mediocre>excellent sappy>poignant overrated>underrated underrated>overrated overlong>tight tasteless>tasteful
lifeless>lively dismal>brilliant lackluster>brilliant lacklustre>brilliant insipid>vibrant mundane>extraordinary
wooden>natural stilted>natural dreck>gold horrendous>wonderful pathetic>impressive embarrassing>impressive
painful>pleasant frustrating>satisfying depressing>uplifting uninspiring>inspiring boringly>excitingly
second-rate>first-rate badly-made>well-made poorly-written>well-written poorly-acted>well-acted
unsatisfying>satisfying ineffective>effective weaker>stronger tired>fresh sluggish>brisk plodding>brisk
disjointed>coherent muddled>clear""")
_pairs("r", """well>poorly poorly>well badly>well beautifully>poorly wonderfully>terribly brilliantly>clumsily
nicely>poorly cleverly>clumsily skillfully>clumsily effectively>ineffectively convincingly>unconvincingly
fortunately>unfortunately unfortunately>fortunately sadly>happily happily>sadly thankfully>sadly
luckily>unluckily horribly>wonderfully superbly>poorly masterfully>clumsily expertly>clumsily""")
_pairs("v", """love>hate hate>love loved>hated hated>loved loves>hates hates>loves loving>hating hating>loving
like>dislike dislike>like liked>disliked disliked>liked likes>dislikes dislikes>likes enjoy>hate enjoyed>hated enjoys>hates
enjoying>hating adore>hate adored>hated adores>hates despise>adore despised>adored despises>adores
admire>despise admired>despised detest>adore detested>adored loathe>adore loathed>adored succeeds>fails
succeed>fail succeeded>failed fails>succeeds fail>succeed failed>succeeded lacks>has lacked>had
impress>disappoint impressed>disappointed impresses>disappoints disappoints>impresses disappoint>impress
suffers>benefits suffered>benefited excels>flounders excelled>floundered sucks>rocks sucked>rocked suck>rock
rocks>sucks rocked>sucked shines>flounders shone>floundered delivers>disappoints delivered>disappointed
deserves>lacks deserved>lacked entertains>bores entertained>bored bores>entertains bored>entertained
amazed>bored amazes>bores delights>bores delighted>bored annoys>delights annoyed>delighted irritates>delights
ruins>makes ruined>made fascinates>bores fascinated>bored captivates>bores captivated>bored avoid>watch
avoided>watched""")
_pairs("n", """masterpiece>disaster gem>dud triumph>disaster delight>chore joy>chore pleasure>chore treat>chore
success>failure failure>success disaster>triumph mess>triumph flop>hit winner>loser strength>weakness
strengths>weaknesses weakness>strength weaknesses>strengths flaw>strength flaws>strengths bore>delight
dud>gem garbage>gem trash>treasure crap>gold junk>gem turkey>gem stinker>gem letdown>triumph
disappointment>revelation masterpieces>disasters shame>relief rubbish>gold lack>wealth""")

WN_POS = {"a": "a", "s": "a", "r": "r", "v": "v"}


def read_opinion_lexicon(root: Path) -> dict[str, str]:
    lex: dict[str, str] = {}
    for name, sign in (("positive-words.txt", "+"), ("negative-words.txt", "-")):
        for line in (root / name).read_text(encoding="latin-1").splitlines():
            word = line.strip().lower()
            if word and not word.startswith(";") and WORD.match(word):
                lex.setdefault(word, sign)
    return lex


def build(lexicon_root: Path) -> tuple[dict[str, str], dict[str, tuple[str, str, str]]]:
    from nltk.corpus import wordnet as wn

    raw = read_opinion_lexicon(lexicon_root)
    opinion = {w: s for w, s in raw.items() if w not in NOT_OPINION}
    opinion.update(EXTRA_OPINION)
    swaps: dict[str, tuple[str, str, str]] = {w: (a, p, "curated") for w, (a, p) in CURATED.items()}
    for word, (ant, _) in CURATED.items():  # a curated word is sentiment-bearing, whatever the lists say
        if word not in opinion:
            sign = raw.get(word) or {"+": "-", "-": "+"}.get(opinion.get(ant) or raw.get(ant) or "", "?")
            opinion[word] = sign
    # WordNet direct antonyms of the opinion words, to the other polarity.
    best: dict[str, tuple[str, str, int]] = {}
    for word, sign in opinion.items():
        if word in swaps or "-" in word or word in NO_SWAP:
            continue
        adjective = bool(wn.synsets(word, "a") or wn.synsets(word, "s") or wn.synsets(word, "r"))
        verb_first = len(wn.synsets(word, "v")) >= len(wn.synsets(word, "n"))
        for lemma in wn.lemmas(word):
            tag = WN_POS.get(lemma.synset().pos())
            # a verb antonym only for words that are mostly verbs ("approve"), not adjectives ("correct")
            if tag is None or (tag == "v" and (adjective or not verb_first)):
                continue
            for ant in lemma.antonyms():
                name = ant.name().lower()
                if not WORD.match(name) or opinion.get(name) in (None, sign) or name in NOT_OPINION:
                    continue
                score = lemma.count() + ant.count()
                if word not in best or best[word][2] < score:
                    best[word] = (name, tag, score)
    for word, (ant, tag, _) in best.items():
        swaps[word] = (ant, tag, "wordnet")
    # Affix pairs: un-/in-/im-/il-/ir-/dis- prefixes, -ful/-less suffixes.
    for word, sign in opinion.items():
        if word in swaps or word in NO_SWAP:
            continue
        candidates = [p + word for p in ("un", "in", "im", "il", "ir", "dis")]
        candidates += [word[len(p):] for p in ("un", "in", "im", "il", "ir", "dis") if word.startswith(p)]
        if word.endswith("ful"):
            candidates.append(word[:-3] + "less")
        if word.endswith("less"):
            candidates.append(word[:-4] + "ful")
        for cand in candidates:
            # both must be adjectives/adverbs (WordNet) or look like them: "courage" / "discourage" is noun / verb
            if opinion.get(cand) not in (None, sign) and len(cand) > 3 and _modifier(word, wn) and _modifier(cand, wn):
                swaps[word] = (cand, "a", "affix")
                break
    return dict(sorted(opinion.items())), dict(sorted(swaps.items()))


def _modifier(word: str, wn) -> bool:
    return bool(wn.synsets(word, "a") or wn.synsets(word, "s") or wn.synsets(word, "r")) or word.endswith(
        ("ful", "less", "able", "ible", "ive", "ous", "ly")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--lexicon", type=Path, default=Path("/work/shared/data/nltk_data/corpora/opinion_lexicon"),
                        help="NLTK's opinion_lexicon folder (positive-words.txt, negative-words.txt)")
    parser.add_argument("--out-dir", type=Path, default=root / "nda" / "text" / "data")
    args = parser.parse_args()
    opinion, swaps = build(args.lexicon)
    head = ("built by scripts/build_sentiment_lexicon.py from the Hu & Liu opinion lexicon (Bing Liu, CC BY 4.0; "
            "see OPINION_LEXICON_LICENSE) and WordNet 3.0 (WORDNET_LICENSE)")
    with (args.out_dir / "opinion_words.tsv").open("w", encoding="utf-8") as f:
        f.write(f"# word\tsign  ({head})\n")
        for word, sign in opinion.items():
            f.write(f"{word}\t{sign}\n")
    with (args.out_dir / "sentiment_antonyms.tsv").open("w", encoding="utf-8") as f:
        f.write(f"# word\tantonym\tpos\tsource  ({head})\n")
        for word, (ant, pos, source) in swaps.items():
            f.write(f"{word}\t{ant}\t{pos}\t{source}\n")
    counts = {s: sum(1 for v in swaps.values() if v[2] == s) for s in ("curated", "wordnet", "affix")}
    print(f"wrote {len(opinion)} opinion words and {len(swaps)} swaps {counts} to {args.out_dir}")


if __name__ == "__main__":
    main()
