"""Offline lesson composer: turns any topic into a complete, structured lesson without a network or a model.

The composer is honest about what it is: it knows nothing specific about a topic, so it classifies the
topic into a broad category by keyword heuristics and fills that category's templates, which teach a
sound way of studying such a topic (inputs and mechanism for a natural process, causes and consequences
for a historical event, deliberate practice for a skill, and so on). Everything is pure and synchronous.

Determinism: every choice between phrasing variants is keyed by a SHA-256 digest of the normalised
topic, never by Python's per-process salted ``hash()`` or a random generator, so the same topic always
gives byte-for-byte the same lesson, in any process, while different topics read differently.

Safety: the topic is untrusted text that ends up in Markdown. It is inserted as plain text (the HTML
renderer escapes it), with all whitespace, newlines included, collapsed to single spaces and control
characters removed, and no template ever starts a line with it, so a topic cannot add headings, lists or
other block structure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workflow.lesson.model import (
    KeyTerm,
    LessonContent,
    Misconception,
    Outline,
    OutlineSection,
    QuizQuestion,
    TopicAnalysis,
)

__all__ = ["CATEGORIES", "analyze_topic", "create_content", "generate_outline", "write_summary"]

# Long topics are cut at a word boundary with an ellipsis wherever they are displayed. Prose repeats the
# topic in almost every paragraph, so it gets a shorter cut than the title to stay readable when someone
# pastes a whole paragraph as the topic.
TITLE_LIMIT = 80
PROSE_LIMIT = 50
FALLBACK_CATEGORY = "concept"
QUIZ_SIZE = 4  # with four choices per question this lets every answer position be used exactly once


# --------------------------------------------------------------------------------------------------
# Template shapes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Beat:
    """One outline point and the paragraph (in one or more phrasing variants) that explains it."""

    point: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class _Section:
    titles: tuple[str, ...]  # phrasing variants; the first one is the section's stable key
    beats: tuple[_Beat, ...]


@dataclass(frozen=True)
class _Question:
    question: str
    answer: str
    distractors: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class _Profile:
    """Everything category-specific: how to recognise the category and how to teach a topic in it."""

    slug: str
    keywords: tuple[str, ...]
    kind: str  # "a natural process or phenomenon": what the lesson treats the topic as
    field: str
    question: str  # the lesson's guiding question, ending with "?"
    lens: str  # "by ...": how the lesson approaches the topic
    recap: str
    exercise: str  # full sentences, may use {subject}
    exercise_point: str  # imperative phrase: "draw {subject} as a flow diagram"
    next_step: str  # infinitive phrase without "to", ending with "."
    objectives: tuple[str, ...]
    terms: tuple[tuple[str, str], ...]
    prerequisites: tuple[str, ...]
    sections: tuple[_Section, ...]
    misconceptions: tuple[tuple[str, str], ...]
    quiz: tuple[_Question, ...]
    takeaways: tuple[str, ...]


def _keywords(text: str) -> tuple[str, ...]:
    """Keyword tables are written as comma-separated text so they stay compact and easy to scan."""
    return tuple(" ".join(k.split()) for k in text.split(",") if k.strip())


def _beat(point: str, *paragraphs: str) -> _Beat:
    return _Beat(point, paragraphs)


def _section(titles: tuple[str, ...], *beats: _Beat) -> _Section:
    return _Section(titles, beats)


def _tidy(value: Any) -> Any:
    """Collapse the whitespace of wrapped template text, so the tables below can use readable blocks."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, tuple):
        return tuple(_tidy(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _tidy(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


# --------------------------------------------------------------------------------------------------
# Shared sections: every lesson opens with an orientation and closes by applying what was learned.
# Their slots ({kind}, {question}, ...) come from the category profile.
# --------------------------------------------------------------------------------------------------

_INTRO = _section(
    ("Overview", "Getting Oriented", "The Big Picture"),
    _beat(
        "Where {subject} fits: {field}",
        """This lesson treats {subject} as {kind}, which places it within {field}. That framing matters
        because it tells you which questions are worth asking first and which details can wait. Rather
        than memorising isolated facts, you will build a small mental model that you can extend as you
        learn more.""",
        """A good first step with any new subject is to decide what sort of thing it is. Here, {subject}
        is approached as {kind}, part of {field}. Knowing that gives you a ready-made set of questions to
        ask, and it stops the details from feeling like a pile of unrelated facts.""",
        """Before diving into details, it helps to name the territory. In this lesson, {subject} is
        treated as {kind}, one that belongs to {field}. Each kind of topic rewards a different way of
        thinking, so settling this early makes the rest of the lesson easier to follow and to
        remember.""",
    ),
    _beat(
        "The guiding question: {question}",
        """The thread running through the whole lesson is one question about {subject}: {question}
        Every section answers part of it, and the question doubles as a test: when you can answer it
        clearly in your own words, without notes, you have grasped the core of the topic.""",
        """It helps to start with a guiding question. For {subject}, that question is: {question} Keep it
        in mind as you read. Each section that follows contributes part of the answer, and by the end
        you should be able to give a short, confident response of your own.""",
    ),
    _beat(
        "How this lesson approaches it",
        """The lesson approaches {subject} {lens}. Each section builds on the one before, so reading them
        in order the first time works best. Along the way you will meet key terms, a few common
        misconceptions and a short quiz that lets you check what has stuck.""",
        """To keep things manageable, the lesson works through {subject} {lens}. Treat each section as one
        piece of a larger picture, and pause after each to restate its main point in a sentence.""",
    ),
)

_WRAP_UP = _section(
    ("Putting It Together", "Bringing It Together", "Applying What You Learned"),
    _beat(
        "Recap: {recap}",
        """Looking back, the lesson took {subject} apart into {recap}. These are parts of one picture
        rather than separate facts, and each helps to explain the others. To consolidate, explain the
        whole topic aloud in under a minute, touching on each idea once.""",
        """The main ideas of this lesson fit together: {recap}. They form a framework for {subject} that
        you can reuse and extend, rather than a list of facts to memorise. Try summarising each idea in one
        sentence, then read your sentences in order.""",
    ),
    _beat(
        "Practice: {exercise_point}",
        """Understanding grows fastest when you put it to use. {exercise} Even a rough first attempt shows
        which parts of {subject} you can already explain and which you only recognise.""",
        """Reading about a topic is only half of learning it, so here is an exercise. {exercise} Keep the
        result and compare it with a second attempt a few days later to see how your grasp of {subject}
        has grown.""",
    ),
    _beat(
        "Where to go next",
        """From here, a good next step is to {next_step} The key terms and the quiz offer a quick check:
        if a question feels uncertain, revisit the section it draws on before moving on to more advanced
        material about {subject}.""",
        """To go further with {subject}, a good next step is to {next_step} Return to the quiz after a few
        days as well; spaced review is one of the most reliable ways to make learning last.""",
    ),
)

# Used when an outline comes from somewhere else (another provider, an edited checkpoint) and a section
# title is not one of ours: the explanation is then built from that section's own title and points.
_FOREIGN_OPENING = """This part of the lesson on {subject} is about “{section}”. Read it with the guiding
    question of the lesson in mind: {question} Each idea here contributes part of the answer, so try to
    connect it to what came before rather than treating it as a separate fact."""
_FOREIGN_POINTS = (
    """One idea to focus on here is this: {point}. Put it into your own words and attach a concrete
    example to it; if you can do both without looking back, this part of {subject} has genuinely sunk in
    and the sections that follow will be easier to understand.""",
    """A second idea to hold on to: {point}. Look for how it connects to the first, since links between
    ideas are what turn separate facts about {subject} into understanding you can use in new
    situations.""",
)
_FOREIGN_CLOSING = """Before moving on, pause and write a sentence or two about what this section adds to
    your picture of {subject}. Short written summaries like this are one of the simplest and most reliable
    ways to make new material stick."""

_SUMMARY_OPENINGS = (
    "This lesson introduced {subject} as {kind}, working through {count} sections from a first overview "
    "to a practical exercise.",
    "Across {count} sections, this lesson approached {subject} as {kind}, {lens}.",
)
_SUMMARY_CLOSINGS = (
    "To consolidate it, {exercise_point}, then test yourself with the quiz without looking at your notes.",
    "A good next step is to {next_step}",
)

_TOPIC_TERM = "The subject of this lesson, approached here as {kind} within {field}."
_LEVEL_PREREQUISITE = "A working familiarity with the basics of {subject}"

# --------------------------------------------------------------------------------------------------
# Category profiles. Keywords are matched against the casefolded topic: single ASCII words match a whole
# word, its plural, or (for stems of five or more letters) any word starting with the stem; keywords with
# a space or non-ASCII letters match as substrings. Order matters: it breaks ties between categories.
# --------------------------------------------------------------------------------------------------

_SKILL = _Profile(
    slug="skill",
    keywords=_keywords(
        """bake, baking, bread, sourdough, cook, cooking, recipe, knit, knitting, sew, sewing,
        crochet, woodwork, carpentry, gardening, drawing, sketching, photograph, guitar,
        piano, violin, drum, singing, improvis, jazz, instrument, chess, swim, swimming, running,
        marathon, cycling, juggling, public speaking, negotiat, typing, driving, climbing, skiing,
        surfing, skateboard, football, soccer, basketball, tennis, golf, pottery, calligraphy,
        origami, dance, dancing, ballet, karate, judo, boxing, fishing, hiking, brewing, coffee,
        technique, craft, interview, woodworking, embroidery, carving"""
    ),
    kind="a practical skill",
    field="hands-on practice and craft",
    question="what are the fundamentals, how is it done well, and how do you get better at it?",
    lens="by separating the fundamentals from technique, planning deliberate practice and learning from "
    "common mistakes",
    recap="fundamentals, technique, deliberate practice and common mistakes",
    exercise="""Plan three short practice sessions for {subject}, each with one specific goal, and after
    each session write down one thing that worked and one thing to change next time.""",
    exercise_point="plan three focused practice sessions for {subject}",
    next_step="""find an experienced practitioner, a class or a community where you can get feedback, and
    keep a short practice log for a few weeks.""",
    objectives=(
        "Describe the fundamentals, tools and set-up that {subject} depends on.",
        "Break {subject} into component steps and identify the most difficult ones.",
        "Demonstrate one core technique of {subject} slowly and accurately.",
        "Plan a deliberate practice session for {subject} with a specific, measurable goal.",
        "Diagnose a common mistake in {subject} and propose a correction.",
    ),
    terms=(
        (
            "Fundamentals",
            "The basic principles, movements and habits on which all progress in {subject} is built.",
        ),
        (
            "Technique",
            "A specific, repeatable way of performing part of {subject} that gives reliable results.",
        ),
        (
            "Deliberate practice",
            "Focused practice on one aspect of {subject} at the edge of current ability, with feedback.",
        ),
        (
            "Feedback",
            "Information about the result of an attempt, such as a teacher's comment or a recording.",
        ),
        ("Plateau", "A stretch in which progress seems to stall, usually overcome by changing the practice."),
    ),
    prerequisites=(
        "Willingness to practise regularly in short sessions",
        "Access to the basic tools or materials involved",
        "Patience to repeat simple exercises before moving on",
    ),
    sections=(
        _section(
            ("Fundamentals", "The Foundations"),
            _beat(
                "The core principles everything else rests on",
                """Every skill rests on a few fundamentals that experienced practitioners barely think
                about any more. In {subject}, these are the basic principles, tools and movements that
                everything else depends on. Learning them deliberately at the start feels slow, but it
                prevents bad habits that are much harder to unlearn later.""",
            ),
            _beat(
                "Tools, materials and set-up",
                """Good results depend on preparation as much as performance. Know which tools, materials,
                equipment or environment {subject} requires, and why each one matters. Beginners often
                blame their technique for problems that really come from a poor set-up, so checking the
                basics first is a habit worth building from day one.""",
            ),
            _beat(
                "What a good result looks like",
                """Before practising, get a clear picture of what good looks like. Study skilled examples
                of {subject} and describe specifically what makes them good. A concrete standard lets you
                judge your own attempts honestly, instead of relying on a vague sense that something is
                not quite right.""",
            ),
        ),
        _section(
            ("Technique", "How It Is Done Well"),
            _beat(
                "Breaking the skill into steps",
                """Complex skills become manageable when broken into smaller steps that can be learned
                separately. For {subject}, write out the sequence an expert follows and mark the hardest
                steps. Practising a difficult component on its own, then putting it back into the whole,
                is faster than always repeating the complete performance.""",
            ),
            _beat(
                "Control before speed",
                """A principle shared by crafts, sports and music is **control before speed**. Working
                on {subject} slowly and correctly builds accurate habits; speed, confidence and flair then
                come from repetition. Rushing early tends to lock in errors that later have to be undone,
                which ultimately slows progress.""",
            ),
            _beat(
                "Adapting to real conditions",
                """Real situations rarely match the textbook: materials vary, instruments respond
                differently, opponents surprise you. Skilled practitioners of {subject} notice these
                differences and adjust. Learning to read conditions, and knowing which rules can bend, is
                what separates following instructions from genuine skill.""",
            ),
        ),
        _section(
            ("Deliberate Practice", "Practising Effectively"),
            _beat(
                "One focused goal per session",
                """Improvement comes less from the number of hours spent than from how they are spent.
                **Deliberate practice** means choosing one specific aspect of {subject} to improve in
                each session, working just beyond your comfort zone, and paying full attention. Short,
                focused sessions usually beat long, unfocused ones.""",
            ),
            _beat(
                "Feedback and reflection",
                """Practice without feedback can simply reinforce mistakes. Get feedback from a teacher, a
                recording, a measurement or a comparison with a good example, and reflect on it straight
                away. A brief log of what you tried in {subject} and what happened makes patterns visible
                that memory alone would miss.""",
            ),
            _beat(
                "Spacing and consistency",
                """Skills consolidate between sessions, not only during them. Regular, spaced practice of
                {subject}, even for short periods, produces more durable progress than occasional marathon
                sessions. Plateaus are normal; when one arrives, changing the difficulty or focus of
                practice usually gets things moving again.""",
            ),
        ),
        _section(
            ("Common Mistakes", "Avoiding Common Mistakes"),
            _beat(
                "Typical beginner errors",
                """Most learners make similar mistakes: skipping fundamentals, copying the surface of
                expert work without understanding why it works, changing too many things at once, or
                practising only what already feels comfortable. Recognising these patterns in your own
                approach to {subject} is often the quickest way to make progress.""",
            ),
            _beat(
                "Diagnosing what went wrong",
                """When an attempt fails, treat it as information. Ask which step went wrong, what you
                noticed just before, and what single change you will test next time. This habit of calm
                diagnosis turns setbacks in {subject} into useful lessons and makes progress far less
                dependent on luck.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "Talent matters more than practice in {subject}.",
            """Starting ability varies, but sustained, well-designed practice explains most of the
            difference between beginners and experts.""",
        ),
        (
            "Spending more hours on {subject} always leads to faster improvement.",
            "Unfocused repetition can reinforce errors; focused practice with feedback helps far more.",
        ),
        (
            "Copying what experts do is enough to master {subject}.",
            """Experts rely on fundamentals and judgement that you cannot see; copying the surface without
            understanding why it works rarely transfers.""",
        ),
        (
            "Making mistakes while learning {subject} means you are doing it wrong.",
            """Mistakes are a normal, useful part of practising at the edge of your ability, as long as you
            notice them and learn from them.""",
        ),
    ),
    quiz=(
        _Question(
            "Which practice plan is most likely to speed up progress in {subject}?",
            "Short, focused sessions on one weakness, with feedback",
            (
                "Long sessions repeating whatever already feels comfortable and familiar",
                "Occasional marathon sessions, since total hours are what count most",
                "Watching experts closely without attempting it yourself yet",
            ),
            "Focused work on one weakness, with feedback, improves skill far more than sheer volume.",
        ),
        _Question(
            "Why is it usually wise to practise {subject} slowly at first?",
            "Accurate habits formed slowly let speed build on them",
            (
                "Slow practice means you no longer need any outside feedback",
                "Speed stops mattering once the basic movements are known",
                "Going slowly lets you skip the fundamentals and move on sooner",
            ),
            "Control before speed means habits are learned correctly, so speed later rests on accuracy.",
        ),
        _Question(
            "What does deliberate practice mean?",
            "Focused work just beyond your ability, with feedback",
            (
                "Repeating a complete performance as many times as you can manage",
                "Practising only on days when motivation is naturally high",
                "Reading widely about the skill before ever trying it out",
            ),
            "Deliberate practice targets one aspect at the edge of ability and uses feedback to correct it.",
        ),
        _Question(
            "Progress in {subject} has stalled for weeks. What is the most useful response?",
            "Change the focus or difficulty and seek fresh feedback",
            (
                "Pause practice completely until progress returns by itself",
                "Repeat exactly the same routine, only more often than before",
                "Accept that you have reached the natural limit of your talent",
            ),
            "Plateaus are normal and usually give way when the practice itself is changed.",
        ),
        _Question(
            "After a failed attempt at {subject}, what should you do first?",
            "Find the step that failed and test one change",
            (
                "Change everything at once so the next attempt feels different",
                "Ignore it and hope that the next attempt simply goes better",
                "Restart your training from the very first lesson",
            ),
            "Calm diagnosis of one step, tested with one change, turns a failure into useful information.",
        ),
    ),
    takeaways=(
        """Progress in {subject} comes from solid fundamentals, technique learned step by step, and
        deliberate practice with honest feedback.""",
        """The fastest route to getting better at {subject} is focused, regular practice that targets one
        weakness at a time and treats mistakes as information.""",
    ),
)

_MATHEMATICS = _Profile(
    slug="mathematics",
    keywords=_keywords(
        """math, maths, mathemat, algebra, calculus, geometry, trigonometr, theorem, equation, prime,
        probabilit, statistic, matrix, matrices, linear algebra, derivative, integral, fraction,
        logarithm, exponent, polynomial, topology, proof, number, pythagor, fibonacci, vector,
        arithmetic, percentage, ratio, set theory, graph theory, combinatori, permutation,
        factorial, infinity, bayes, regression, median, standard deviation, variance, differential,
        modular, complex numbers, symmetry, triangle, fourier, geometric, quadratic, inequalit,
        sequence, series, integer"""
    ),
    kind="a mathematical idea",
    field="mathematics",
    question="what exactly does it mean, why is it true, and how do you use it?",
    lens="by pinning down the definitions, seeing why the central idea holds, and working problems step "
    "by step",
    recap="precise definitions, the reasoning behind the central result, and a reliable method for using it",
    exercise="""Work one simple example involving {subject} by hand, writing down every step, then change
    one number or condition and predict the new result before you calculate it.""",
    exercise_point="work one example of {subject} by hand, then vary it",
    next_step="""try a small set of graded exercises, and find a proof or derivation of the central result
    that you can follow line by line.""",
    objectives=(
        "State the key definitions behind {subject} precisely, including their conditions.",
        "Explain in words why the central result of {subject} holds.",
        "Apply {subject} to solve a straightforward problem, showing each step.",
        "Check a solution involving {subject} using estimation, substitution or a special case.",
        "Distinguish examples from non-examples of {subject} and name the condition that separates them.",
    ),
    terms=(
        ("Definition", "A precise statement of what a term in {subject} means, including every condition."),
        ("Theorem", "A statement that has been proved to follow from definitions and earlier results."),
        ("Proof", "A logical argument showing that a statement must be true under stated assumptions."),
        ("Condition", "A requirement that must hold for a definition or result about {subject} to apply."),
        ("Counterexample", "A single case showing that a general claim is false."),
    ),
    prerequisites=(
        "Confident arithmetic and basic algebra",
        "Reading and writing simple mathematical notation",
        "Patience to work through examples by hand",
    ),
    sections=(
        _section(
            ("Definitions and Notation", "Saying Exactly What It Means"),
            _beat(
                "Precise definitions and their conditions",
                """Mathematics depends on saying exactly what words mean. Start your study of {subject} by
                writing down the definitions involved in your own words, then checking them against a
                textbook. Pay attention to every condition: small phrases such as 'for all', 'there
                exists' or 'non-zero' often carry the whole meaning.""",
            ),
            _beat(
                "Reading the notation",
                """Notation is a compact language, and much early confusion comes from reading symbols
                too quickly. For {subject}, make a short glossary of the symbols you meet and read each
                formula aloud in words. Translating between symbols and sentences is a reliable sign that
                you understand what a statement says.""",
            ),
            _beat(
                "Examples and non-examples",
                """Definitions come alive through examples. Find two or three simple cases that fit the
                definitions behind {subject}, and at least one that narrowly fails. Non-examples are
                especially valuable, because they show which condition is doing the work and why it is
                needed.""",
            ),
        ),
        _section(
            ("The Core Idea", "Why It Works"),
            _beat(
                "The central result and when it applies",
                """At the centre of {subject} there is usually one key result, relationship or technique.
                State it clearly, together with the conditions under which it holds. A result applied
                outside its conditions can give confident but wrong answers, so knowing exactly when it
                applies is as important as knowing what it says.""",
            ),
            _beat(
                "Intuition before formality",
                """Before following a formal argument, build intuition: draw a picture, try small cases, or
                look for a pattern in a table of values. Intuition about {subject} tells you what to
                expect, and the formal reasoning then explains why the pattern must hold rather than
                merely seeming to.""",
            ),
            _beat(
                "Why it is true",
                """In mathematics a result is accepted because it is proved, not because it works in
                examples. Following a **proof** or derivation connected with {subject} step by step shows
                which assumptions are used and where. Reading one carefully deepens understanding far
                more than memorising a formula.""",
            ),
        ),
        _section(
            ("Working Problems", "Method and Practice"),
            _beat(
                "A step-by-step method",
                """Most problems involving {subject} yield to a simple routine: identify what is given and
                what is asked, choose the relevant definition or result, carry out the steps carefully,
                and check the answer. Writing each step on its own line makes errors easier to spot and
                your reasoning easier for others to follow.""",
            ),
            _beat(
                "Checking answers",
                """Checking is part of the method, not an optional extra. Estimate the answer before
                calculating, substitute the result back where possible, test a special case, and ask
                whether the size and sign make sense. These habits catch most slips and build confidence
                in your work with {subject}.""",
            ),
            _beat(
                "Learning from errors",
                """Typical errors include applying a result outside its conditions, dropping a sign or a
                condition along the way, and confusing similar notation. When you make a mistake with
                {subject}, classify it as a misunderstanding, a procedural slip or a misreading: each
                needs a different fix.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "If a rule about {subject} works for a few examples, it must always be true.",
            """Examples can suggest a pattern, but only a proof establishes it, and a single counterexample
            is enough to disprove a claim.""",
        ),
        (
            "Understanding {subject} means memorising the formulas.",
            """Formulas are compressed conclusions; understanding means knowing what they mean, when they
            apply and why they hold.""",
        ),
        (
            "The conditions attached to results about {subject} are technicalities that can be ignored.",
            "Conditions mark where a result is valid; ignoring them gives confident but wrong answers.",
        ),
        (
            "Getting the right final answer to a problem on {subject} means the working was correct.",
            """A right answer can come from errors that cancel out or from luck, so the reasoning has to be
            checked step by step.""",
        ),
    ),
    quiz=(
        _Question(
            "A claim about {subject} held in five examples you checked. What can you conclude?",
            "It may be true, but it still needs a proof",
            (
                "It is now proved to hold in every possible case",
                "It must be false, because five examples are far too few",
                "It holds for every case except the five already checked",
            ),
            "Examples suggest patterns, but only a proof establishes a general statement.",
        ),
        _Question(
            "What is a counterexample?",
            "A single case showing a general claim is false",
            (
                "An example that supports a general claim and strengthens it",
                "A proof that works backwards from the conclusion",
                "A calculation that happens to produce a negative answer",
            ),
            "One case that breaks a claim is enough to show the claim is not true in general.",
        ),
        _Question(
            "Why do the conditions attached to a result about {subject} matter?",
            "They mark where the result is guaranteed to hold",
            (
                "They are a matter of style and can safely be skipped",
                "They only start to matter in advanced university courses",
                "They make the result true in every case, without exception",
            ),
            "Outside its conditions a result may fail, so the conditions define where it can be trusted.",
        ),
        _Question(
            "Which habit most reliably catches errors when working on {subject}?",
            "Estimating first, then checking by substitution",
            (
                "Working faster so that there is less time to make slips",
                "Skipping written steps to keep the page short and tidy",
                "Trusting the first answer that looks roughly reasonable",
            ),
            "Estimation and independent checks expose slips that rereading the same steps tends to miss.",
        ),
        _Question(
            "What is the main purpose of a proof?",
            "To show a statement must follow from its assumptions",
            (
                "To give one worked numerical example that illustrates a statement",
                "To make a result shorter and easier to memorise",
                "To list all the notation and symbols a topic uses",
            ),
            "A proof turns a plausible pattern into a certainty by deriving it from accepted assumptions.",
        ),
    ),
    takeaways=(
        """Working with {subject} rests on precise definitions, a clear grasp of why the central result
        holds and under which conditions, and a careful, checkable method.""",
        """Confidence with {subject} comes from knowing what each statement means, why it is true and how
        to check every step of your own work.""",
    ),
)

_TECHNOLOGY = _Profile(
    slug="technology",
    keywords=_keywords(
        """comput, software, hardware, algorithm, network, internet, tcp, udp, ip address, http,
        https, dns, protocol, congestion, router, server, database, sql, program, code, coding,
        python, javascript, java, rust, compiler, operating system, linux, kernel, cloud, api,
        encryption, cryptograph, blockchain, machine learning, deep learning, neural network,
        artificial intelligence, ai, llm, robot, cybersecurity, web, website, app, smartphone,
        data structure, big data, engineering, circuit, semiconductor, transistor, chip,
        3d printing, git, docker, kubernetes, cache, bandwidth, latency, wifi, bluetooth, 5g,
        satellite, gps, version control, search engine, browser, digital, automation,
        microprocessor, hashing, sorting, recursion, js, event loop, concurren, async, thread,
        frontend, backend, virtualization, virtualisation, firewall, encoding"""
    ),
    kind="a technology or technical system",
    field="computing and engineering",
    question="what problem does it solve, how does it work, and what does it trade away?",
    lens="by asking what problem it solves, how its parts fit together, and what its design trades away",
    recap="the problem it solves, its components and data flow, and the trade-offs behind its design",
    exercise="""Pick one concrete scenario where {subject} is used and write down the input it receives,
    the steps it performs and the output it returns, then note one situation in which it would
    struggle.""",
    exercise_point="trace one real use of {subject} from start to finish",
    next_step="""read the documentation, standard or original paper behind {subject}, or build a tiny
    working example of your own.""",
    objectives=(
        "Explain the problem {subject} was designed to solve.",
        "Identify the main components of {subject} and describe what each one does.",
        "Trace the flow of data or control through {subject} for one concrete example.",
        "Compare {subject} with an alternative approach in terms of at least two trade-offs.",
        "Evaluate when {subject} is an appropriate choice and when it is not.",
    ),
    terms=(
        ("Component", "A distinct part of {subject} with a single, well-defined responsibility."),
        ("Interface", "The agreed inputs, outputs and rules through which parts of {subject} communicate."),
        ("Trade-off", "A design choice that improves one quality, such as speed, at the cost of another."),
        ("Failure mode", "A specific way in which {subject} can stop working correctly, such as overload."),
        (
            "Abstraction",
            "A simplified view that hides internal details so other parts can rely on it safely.",
        ),
    ),
    prerequisites=(
        "Everyday familiarity with computers and the internet",
        "Comfort reading simple box-and-arrow diagrams",
        "A little programming experience helps but is not essential",
    ),
    sections=(
        _section(
            ("The Problem It Solves", "Why It Exists"),
            _beat(
                "The need behind {subject}",
                """Every technology exists because someone had a problem that existing tools handled
                badly. Before looking at how {subject} works, ask what that problem was: something too
                slow, too unreliable, too expensive or simply impossible before. Keeping the original
                problem in view makes the design choices that follow far easier to understand.""",
            ),
            _beat(
                "What came before it",
                """It also helps to know what people did before. Earlier approaches usually still work in
                some situations, and comparing them with {subject} shows what the newer idea really adds.
                Often the improvement is not one dramatic feature but handling scale, failure or
                complexity better than its predecessors.""",
            ),
            _beat(
                "Who relies on it",
                """Consider who relies on it. Users care about the result, developers about the interface
                and operators about cost and failure. Describing {subject} from each of these viewpoints
                gives a fuller picture than any single description, and shows where most of the practical
                difficulty lies.""",
            ),
        ),
        _section(
            ("How It Works", "Components and Data Flow"),
            _beat(
                "The main components",
                """Most technical systems can be described as a handful of components that pass
                information or control between them. For {subject}, name those components and say what
                each is responsible for. A box-and-arrow sketch is enough: the goal is to see the
                structure clearly before worrying about implementation details.""",
            ),
            _beat(
                "The flow of data and control",
                """Next, follow a single piece of data or a single request through the system from start
                to finish. This end-to-end trace reveals the order of operations, where state is stored
                and where decisions are made. It is the best way to move from a vague picture of
                {subject} to an explanation you could give someone else.""",
            ),
            _beat(
                "Protocols, rules and interfaces",
                """Components only work together because they agree on rules: formats, protocols,
                **interfaces** or algorithms that define exactly what each side may expect. These
                agreements make {subject} reliable and let parts be replaced. When something goes wrong
                in practice, it is very often at one of these boundaries.""",
            ),
        ),
        _section(
            ("Trade-offs and Limits", "Design Choices and Their Costs"),
            _beat(
                "What it optimises for",
                """No design is best at everything. Engineers choose what to optimise, such as speed,
                reliability, simplicity, cost or security, and accept weaker results elsewhere. Asking
                what {subject} was optimised for explains many of its quirks, and tells you when a
                different tool would be the better choice.""",
            ),
            _beat(
                "Failure modes and limits",
                """Every system has limits: loads it cannot handle, inputs it was not designed for, or
                conditions under which it degrades. Understanding how {subject} fails, and how it
                recovers, matters as much as knowing how it works when everything goes well, because in
                real environments failures are normal.""",
            ),
            _beat(
                "Security and responsible use",
                """Finally, consider the wider effects. Technologies can be misused, can expose data, or
                can affect people who never chose to use them. Asking who could be harmed by {subject},
                and which safeguards exist, is part of understanding it properly rather than an optional
                extra for specialists.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "If {subject} is newer than the alternatives, it must be better in every way.",
            """Newer designs usually improve some qualities at the cost of others, so the right choice
            depends on the situation.""",
        ),
        (
            "Understanding {subject} means memorising specific products, commands or settings.",
            """Products change quickly; the durable knowledge is the problem, the components and the
            trade-offs behind them.""",
        ),
        (
            "Once {subject} works in a small test, it will behave the same way under real load.",
            """Real use brings more data, more users and more failures, which expose limits a small test
            never reaches.""",
        ),
        (
            "Security is a separate concern that can be added to {subject} later.",
            "Security depends on early design decisions, so it is far cheaper to consider it from the start.",
        ),
    ),
    quiz=(
        _Question(
            "What is the most useful first question to ask when learning {subject}?",
            "What problem was it designed to solve?",
            (
                "Which company sells the most popular version?",
                "How many lines of code does it contain?",
                "What is its latest version number?",
            ),
            "The original problem explains the design choices and tells you when it is the right fit.",
        ),
        _Question(
            "What does it mean to call a design decision in {subject} a trade-off?",
            "Gaining one quality, such as speed, at a cost to another",
            (
                "A feature that brings benefits with no disadvantages at all",
                "A known bug that the designers decided never to fix",
                "An optional add-on that is sold separately from the core",
            ),
            "A trade-off gains one quality by giving up some of another, which is true of every real design.",
        ),
        _Question(
            "Where do problems in a system like {subject} most often appear in practice?",
            "Where components exchange data or control",
            (
                "Only inside the single most complicated component",
                "Only in the hardware of the people who use it",
                "Nowhere, as long as the design is correct on paper",
            ),
            "Interfaces are where assumptions meet, so mismatches and failures tend to surface there.",
        ),
        _Question(
            "Why is tracing one request or piece of data through {subject} useful?",
            "It shows the order of operations and where state lives",
            (
                "It removes the need to understand the individual components",
                "It measures the exact running cost of the whole system",
                "It proves that the system has no remaining failure modes",
            ),
            "An end-to-end trace turns a static diagram into a concrete sequence you can reason about.",
        ),
        _Question(
            "Which approach gives the most durable understanding of {subject}?",
            "Learning its purpose, structure and trade-offs",
            (
                "Memorising the commands of one specific product",
                "Relying on the marketing descriptions of its vendors",
                "Assuming it behaves like every similar tool",
            ),
            "Purpose, structure and trade-offs outlast any particular product or version.",
        ),
    ),
    takeaways=(
        """The durable understanding of {subject} lies in the problem it solves, the way its components
        cooperate through clear interfaces, and the trade-offs its designers accepted.""",
        """Knowing why {subject} exists, how data flows through it and where it fails makes it far easier
        to use well and to choose alternatives wisely.""",
    ),
)

_SCIENCE = _Profile(
    slug="science",
    keywords=_keywords(
        """photosynth, respirat, osmosis, diffusion, evolution, natural selection, gravity,
        gravitation, magnetism, electricity, electromagnet, atom, atomic, molecule, molecular,
        cell, cellular, dna, rna, gene, genetic, protein, enzyme, metabolism, ecosystem, ecolog,
        climate, weather, volcano, earthquake, tectonic, erosion, water cycle, carbon cycle,
        nitrogen, mitosis, meiosis, chemistry, chemical, reaction, physics, biology, geology,
        astronom, star, planet, galaxy, galaxies, black hole, universe, big bang, quantum,
        relativity, thermodynamic, entropy, energy, light, sound, wave, force, motion, friction,
        acid, oxidation, combustion, ferment, plant, animal, bacteria, fossil, tide, ocean, photon,
        electron, nuclear, fusion, fission, radioactiv, element, periodic table, mineral, rock,
        soil, pollinat, food chain, food web, biodiversity, species, neuron, hormone, magnet,
        optics, science, scientific, ökolog, 光合作用, biolog, chemie, physik"""
    ),
    kind="a natural process or phenomenon",
    field="the natural sciences",
    question="what drives it, how does it unfold, and what does it change?",
    lens="by following what goes in, what happens along the way, and what comes out",
    recap="inputs and conditions, the mechanism, outputs and effects, and its place in larger systems",
    exercise="""Sketch a simple flow diagram of {subject}: inputs on the left, the main stages in the
    middle, outputs on the right, and underneath, one condition that could slow the whole thing down.""",
    exercise_point="draw {subject} as a flow diagram",
    next_step="""look up one real measurement or experiment involving {subject} and note which input or
    condition it varies.""",
    objectives=(
        "Explain in your own words what drives {subject} and what it produces.",
        "Identify the main inputs, stages and outputs involved in {subject}.",
        "Describe how one condition, such as temperature or the supply of an input, affects {subject}.",
        "Apply the idea of a limiting factor to predict how {subject} responds when one input changes.",
        "Connect {subject} to at least one larger system or cycle that depends on it.",
    ),
    terms=(
        ("Input", "A substance, form of energy or signal that must be present for {subject} to take place."),
        ("Output", "A product or change that results from {subject}, including by-products."),
        ("Mechanism", "The ordered sequence of steps by which the inputs of {subject} become its outputs."),
        ("Limiting factor", "The input or condition in shortest supply, which caps how fast {subject} runs."),
        ("Model", "A simplified diagram, equation or simulation used to describe and predict {subject}."),
    ),
    prerequisites=(
        "Basic ideas about matter and energy",
        "Reading simple diagrams and graphs",
        "The idea of a fair test in an experiment",
    ),
    sections=(
        _section(
            ("Inputs and Conditions", "What Goes In"),
            _beat(
                "The materials and energy {subject} needs",
                """Every natural process starts with something that has to be present first: matter,
                energy, or a signal that sets things moving. For {subject}, list these inputs explicitly.
                Asking where each one comes from, and what happens if it runs short, is often the fastest
                route to understanding why the process behaves as it does.""",
            ),
            _beat(
                "The conditions that let it run",
                """Inputs alone are not enough. Conditions such as temperature, pressure, concentration or
                the presence of the right structures decide whether anything happens at all. Outside a
                favourable range, {subject} may slow down, change character or stop, which is why
                experiments usually vary one condition at a time.""",
            ),
            _beat(
                "The limiting factor",
                """When several inputs are needed together, the one in shortest supply sets the pace. This
                is the idea of a **limiting factor**: adding more of a plentiful input changes nothing,
                while a small increase in the scarce one produces a clear effect. Look for this pattern
                whenever you study {subject}.""",
            ),
        ),
        _section(
            ("The Mechanism", "How It Works, Step by Step"),
            _beat(
                "The main stages, in order",
                """At the heart of {subject} is a **mechanism**: a sequence of steps in which each stage
                prepares the conditions for the next. Writing those stages down in order, even in rough
                words, turns a vague idea into something you can reason about, and shows where energy or
                matter changes form.""",
            ),
            _beat(
                "What controls the speed",
                """Not every stage runs at the same pace. Some depend on physical factors such as
                diffusion or temperature; others depend on structures, catalysts or enzymes that can be
                saturated. Identifying the slowest step explains how {subject} responds to change, and it
                is the step researchers target to speed the process up or slow it down.""",
            ),
            _beat(
                "Models scientists use",
                """Because the underlying events are often too small, too fast or too slow to watch
                directly, scientists describe {subject} with models: diagrams, equations or simulations.
                A model is useful when it predicts what will happen under new conditions, and knowing
                what it leaves out is part of understanding it.""",
            ),
        ),
        _section(
            ("Outputs and Effects", "What Comes Out"),
            _beat(
                "The products and changes it creates",
                """Following the mechanism to its end tells you what {subject} produces: new substances,
                stored or released energy, movement, or a change of state. Outputs are easiest to
                remember when you pair each one with the input it came from, because matter and energy
                are conserved and must be accounted for somewhere.""",
            ),
            _beat(
                "By-products and side effects",
                """Most natural processes also produce things that are not their main result, such as heat,
                waste or small changes in the surroundings. These by-products are easy to overlook, yet
                they often matter: they can feed other processes, limit how long {subject} can continue,
                or have environmental effects of their own.""",
            ),
            _beat(
                "Measuring the output",
                """To study a process, scientists need something they can measure, often the rate at which
                an output appears or an input disappears. Choosing a good measure for {subject}, and
                keeping everything else constant while changing one factor, is the basis of a fair test
                and of most of what we know about it.""",
            ),
        ),
        _section(
            ("Why It Matters", "The Wider System"),
            _beat(
                "Links to larger systems and cycles",
                """No process happens in isolation. The outputs of {subject} become the inputs of something
                else, and its own inputs are supplied by other processes. Tracing these links shows how it
                fits into larger cycles and systems, and explains why a change in one place can have
                effects that appear far away or much later.""",
            ),
            _beat(
                "Practical relevance",
                """Understanding {subject} is not only of academic interest. Knowledge of natural processes
                underpins medicine, agriculture, engineering and environmental policy, and helps people
                make sense of the news and of everyday observations. Asking who relies on this process,
                and what would happen if it were disrupted, reveals its real importance.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "Once you know the inputs and outputs of {subject}, you understand it.",
            """Inputs and outputs only frame the process; understanding comes from the mechanism in between
            and the conditions that control it.""",
        ),
        (
            "Adding more of any input always makes {subject} go faster.",
            """Only the limiting factor controls the rate; adding more of an input that is already plentiful
            has little or no effect.""",
        ),
        (
            "A scientific model of {subject} is an exact picture of what really happens.",
            """Models are deliberate simplifications, judged by how well they predict, and each one leaves
            some details out.""",
        ),
        (
            "The by-products of {subject} do not matter because they are not its main result.",
            """By-products such as heat or waste often feed other processes or limit the process itself, so
            they matter to the bigger picture.""",
        ),
    ),
    quiz=(
        _Question(
            "In the study of {subject}, what is a limiting factor?",
            "The input or condition in shortest supply, capping the rate",
            (
                "The final product that the process is best known for making",
                "Any factor that scientists decide not to measure in a study",
                "The first stage of the mechanism, which starts the process",
            ),
            "Whichever requirement runs short first sets the pace for the whole process.",
        ),
        _Question(
            "What is the best way to find out how temperature affects {subject}?",
            "Vary temperature alone, keep the rest constant, measure the rate",
            (
                "Change the temperature and the inputs together to save time",
                "Observe it once at room temperature and generalise from that",
                "Infer the effect of temperature by reading the list of outputs alone",
            ),
            "A fair test varies one factor at a time, so any change in the rate can be attributed to it.",
        ),
        _Question(
            "Why do scientists describe {subject} with models?",
            "The events are hard to observe, and models make testable predictions",
            (
                "Models are exact copies of reality, so experiments become unnecessary",
                "Models are mainly used to make a topic look more impressive",
                "Models remove the need to measure any of the inputs or outputs",
            ),
            "Models simplify what cannot easily be watched and earn their place by testable predictions.",
        ),
        _Question(
            "Which statement about the outputs of {subject} is most accurate?",
            "They include by-products and account for what went in",
            (
                "They consist only of the single product the process is known for",
                "They have no particular relationship to the inputs that went in",
                "They can safely be ignored once the mechanism is understood",
            ),
            "Matter and energy are conserved, so every input ends up somewhere among the outputs.",
        ),
        _Question(
            "Why does understanding {subject} matter beyond the classroom?",
            "It is linked to larger systems that people rely on",
            (
                "It happens in isolation, so changes to it affect nothing else",
                "It matters mainly for passing examinations in science",
                "Its effects always appear immediately and close by",
            ),
            "Natural processes are linked in cycles, so a change to one can have distant or delayed effects.",
        ),
    ),
    takeaways=(
        """The key idea to keep is that {subject} turns inputs into outputs through a mechanism, that the
        scarcest input or least favourable condition sets its pace, and that everything going in must be
        accounted for coming out.""",
        """Seeing {subject} as inputs, a mechanism and outputs, governed by a limiting factor and linked to
        larger systems, gives a framework that makes new details easy to place.""",
    ),
)

_HEALTH = _Profile(
    slug="health",
    keywords=_keywords(
        """health, healthy, nutrition, nutrient, diet, vitamin, exercise, fitness, sleep, stress,
        anxiety, depression, mental health, heart, blood, blood pressure, immun, vaccin, disease,
        illness, infection, diabetes, cancer, obesity, anatomy, muscle, bone, digestion, digestive,
        medicine, medical, drug, pharmacolog, first aid, hygiene, allergy, allergies, pregnancy,
        aging, ageing, posture, hydration, meditation, mindfulness, wellbeing, injury, injuries,
        cholesterol, public health, virus, viruses, symptom, therapy, brain, kidney, liver, lung,
        yoga, workout, calorie"""
    ),
    kind="a topic in health and the human body",
    field="health and human biology",
    question="how is the body involved, what raises or lowers risk, and what does the evidence say?",
    lens="by connecting it to how the body works, looking at what raises or lowers risk, and weighing the "
    "evidence behind practical advice",
    recap="the body systems involved, risk and protective factors, and how to judge evidence and advice",
    exercise="""Find one piece of advice about {subject} from a reputable health organisation, and write
    down what it recommends, what evidence it cites, and which body system it relates to.""",
    exercise_point="evaluate one piece of advice about {subject}",
    next_step="""read guidance from a national health service or a major medical organisation, and talk to
    a qualified professional about anything that applies to you personally.""",
    objectives=(
        "Describe which body systems are involved in {subject} and what they normally do.",
        "Distinguish risk factors from protective factors related to {subject}.",
        "Explain why a risk factor raises the probability of a problem without guaranteeing it.",
        "Evaluate the quality of a health claim about {subject} from its source and evidence.",
        "Identify evidence-based steps related to {subject} and when to seek professional advice.",
    ),
    terms=(
        (
            "Homeostasis",
            "The body's regulation of internal conditions, such as temperature, within safe ranges.",
        ),
        (
            "Risk factor",
            "Something that makes a health problem related to {subject} more likely, not certain.",
        ),
        (
            "Protective factor",
            "A habit, condition or resource that lowers the likelihood of a health problem.",
        ),
        ("Prevention", "Action that stops a health problem from developing, from habits to public measures."),
        (
            "Systematic review",
            "A study that combines many studies on one question to reach a firmer conclusion.",
        ),
    ),
    prerequisites=(
        "Basic knowledge of the main organs of the human body",
        "Reading simple statistics such as percentages and rates",
        "An interest in how everyday habits affect health",
    ),
    sections=(
        _section(
            ("How the Body Is Involved", "The Biology Behind It"),
            _beat(
                "The body systems involved",
                """Health topics make most sense when linked to the biology underneath them. Identify
                which body systems are involved in {subject}, for example circulation, digestion, the
                immune system, the nervous system or the muscles and bones, and what each normally does.
                Knowing the normal state makes changes and problems easier to understand.""",
            ),
            _beat(
                "Balance and regulation",
                """The body constantly works to keep conditions such as temperature, blood sugar and fluid
                levels within healthy ranges, a process called **homeostasis**. Many health issues can be
                understood as that balance being strained or disrupted. Asking which balance is involved
                in {subject}, and what restores it, is a useful way in.""",
            ),
        ),
        _section(
            ("Risk and Protective Factors", "What Makes a Difference"),
            _beat(
                "Risk factors and probability",
                """A **risk factor** is anything that makes a problem more likely, such as age, genetics,
                environment or habits. Risk factors related to {subject} raise probabilities; they do not
                guarantee outcomes. That distinction matters: many people with a risk factor never develop
                a problem, and some people without one do.""",
            ),
            _beat(
                "Protective factors and prevention",
                """Protective factors lower risk, and many are everyday habits: sleep, physical activity,
                diet, social connection and avoiding harmful substances. Prevention works at several
                levels, from personal choices to public health measures. For {subject}, ask which factors
                can be changed and where effort makes the most difference.""",
            ),
        ),
        _section(
            ("Evidence and Practical Guidance", "What the Evidence Says"),
            _beat(
                "Judging health claims",
                """Health information varies enormously in quality. Claims about {subject} deserve more
                trust when they come from systematic reviews, large well-designed studies and recognised
                health organisations, and less when they rest on anecdotes, a single small study or
                someone selling a product. A correlation alone does not show cause.""",
            ),
            _beat(
                "Turning evidence into action",
                """Good guidance turns evidence into clear, practical steps while acknowledging uncertainty
                and individual differences. Treat general information about {subject} as a starting point,
                not a diagnosis. This lesson is educational and is not medical advice: for anything that
                affects your own health, consult a qualified professional.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "Having a risk factor related to {subject} means a problem is certain.",
            "Risk factors raise probabilities; many people with a risk factor never develop the problem.",
        ),
        (
            "If a study finds a link involving {subject}, one thing must cause the other.",
            """A link can come from chance or a shared cause; showing causation needs careful study designs
            and repeated evidence.""",
        ),
        (
            "Advice about {subject} that worked for one person will work for everyone.",
            """People differ in biology and circumstances, which is why evidence from many people and
            personal medical advice both matter.""",
        ),
        (
            "Natural or popular remedies related to {subject} must be safe and effective.",
            "Being natural or popular says nothing about safety or effect; only good evidence does.",
        ),
    ),
    quiz=(
        _Question(
            "What does it mean to call something a risk factor for a problem related to {subject}?",
            "It makes the problem more likely, not certain",
            (
                "It guarantees that the problem will eventually develop",
                "It has been shown to cause the problem in everyone exposed",
                "It protects against the problem in most people",
            ),
            "Risk factors shift probabilities; they do not decide outcomes for any individual.",
        ),
        _Question(
            "Which source of information about {subject} generally deserves the most trust?",
            "A systematic review or official health guidance",
            (
                "A single, vivid personal story shared widely online",
                "An advertisement for a related product or supplement",
                "A small study that has not yet been repeated by others",
            ),
            "Systematic reviews and official guidance weigh many studies, so they are less easily misled.",
        ),
        _Question(
            "A study finds that people with a certain habit have fewer problems related to {subject}. "
            "What follows from that alone?",
            "The habit is linked to fewer problems, perhaps not causally",
            (
                "The habit definitely prevents the problems from developing",
                "The habit has no effect at all, since studies can mislead",
                "Everyone should adopt the habit immediately to be safe",
            ),
            "An association can reflect other differences between groups, so causation needs more evidence.",
        ),
        _Question(
            "What is homeostasis?",
            "The body keeping internal conditions within healthy ranges",
            (
                "A type of infection that spreads from one organ to another",
                "A method doctors use for measuring physical fitness",
                "The study of how body shape changes as people age",
            ),
            "Homeostasis keeps things like temperature and blood sugar within the ranges the body needs.",
        ),
        _Question(
            "How should general information about {subject} be used?",
            "As a starting point, with a professional for personal decisions",
            (
                "As a full substitute for a diagnosis from a medical professional",
                "Only when it agrees with what you already believe about health",
                "Never, because all health information online is unreliable",
            ),
            "General information cannot allow for individual circumstances, which professionals can assess.",
        ),
    ),
    takeaways=(
        """Understanding {subject} involves linking it to the body systems involved, separating risk from
        protective factors, and judging advice by the quality of its evidence.""",
        """The most useful habits with {subject} are thinking in probabilities rather than certainties,
        preferring strong evidence to anecdotes, and seeking professional advice for personal decisions.""",
    ),
)

_HISTORY = _Profile(
    slug="history",
    keywords=_keywords(
        """histor, revolution, war, world war, empire, dynasty, kingdom, ancient, medieval,
        renaissance, reformation, coloni, independence, treaty, battle, conquest, crusade, pharaoh,
        roman, rome, byzantine, ottoman, mongol, viking, aztec, inca, maya, feudal, monarchy,
        cold war, holocaust, slavery, abolition, civil rights, century, middle ages, bronze age,
        iron age, napoleon, archaeolog, prehistor, dynastic, reign, civilization, civilisation,
        imperial, imperialism, unification, partition, uprising, rebellion, invasion, armistice,
        pharaohs, samurai, shogun, tsar, geschichte"""
    ),
    kind="a historical period or event",
    field="history",
    question="why did it happen, what happened, and why does it still matter?",
    lens="by placing it in its time, tracing its causes, following the events and weighing the consequences",
    recap="context, causes, the course of events, and consequences and legacy",
    exercise="""Draw a simple timeline of {subject} with five entries, label each one as a cause, a
    turning point or a consequence, and add a sentence about the evidence you would check it against.""",
    exercise_point="build an annotated timeline of {subject}",
    next_step="""read one primary source from the period and one modern historian's account, and compare
    what each of them emphasises.""",
    objectives=(
        "Describe the historical context in which {subject} took place.",
        "Distinguish long-term causes from short-term triggers of {subject}.",
        "Sequence the main turning points of {subject} on a timeline.",
        "Analyse, using evidence, how at least two groups experienced {subject} differently.",
        "Evaluate the consequences and legacy of {subject}, including how it is remembered today.",
    ),
    terms=(
        ("Context", "The political, economic, social and cultural circumstances surrounding {subject}."),
        ("Long-term cause", "A condition that built up over years and made {subject} more likely."),
        ("Trigger", "A specific event or decision that set {subject} in motion once pressures existed."),
        ("Primary source", "A document or object produced at the time by someone involved or present."),
        ("Legacy", "The lasting effects of {subject}, including how later generations interpret it."),
    ),
    prerequisites=(
        "A rough sense of the period and region involved",
        "Reading a timeline and a simple historical map",
        "Comfort comparing two accounts of the same event",
    ),
    sections=(
        _section(
            ("Historical Context", "Setting the Scene"),
            _beat(
                "The world before {subject}",
                """Events make sense only against the background in which they happened. Before looking
                at {subject} itself, sketch the world just before it: who held power, how people made a
                living, what they believed and what tensions already existed. This context explains why
                certain choices seemed reasonable at the time.""",
            ),
            _beat(
                "Key people and groups",
                """History is made by people, but rarely by individuals acting alone. Identify the main
                groups involved in {subject}, such as rulers, officials, soldiers, merchants, workers or
                ordinary families, and ask what each wanted. Conflicts and alliances between groups often
                explain more than the actions of famous leaders.""",
            ),
        ),
        _section(
            ("Causes", "Why It Happened"),
            _beat(
                "Long-term causes",
                """Historians usually separate **long-term causes**, built up over years or decades, from
                the short-term triggers that set events in motion. For {subject}, long-term causes might
                include economic pressure, social change, new ideas or shifts in power. They explain why
                the situation was unstable, though not why change came when it did.""",
            ),
            _beat(
                "Short-term triggers",
                """**Triggers** are the specific events, decisions or accidents that turned pressure into
                action. They are often dramatic and memorable, which is why they are sometimes mistaken
                for the whole explanation. A good account of {subject} shows how triggers and deeper
                causes worked together, and why neither would have been enough alone.""",
            ),
            _beat(
                "Weighing causes against each other",
                """Because many causes were at work, historians argue about which mattered most. That
                debate is not confusion; it is how the discipline works. When you read about {subject},
                notice which causes an author emphasises and what evidence they offer, and ask what a
                writer with a different view might say.""",
            ),
        ),
        _section(
            ("The Course of Events", "What Happened"),
            _beat(
                "The main turning points",
                """Rather than memorising every date, identify a few turning points: moments after which
                things could not return to how they had been. For {subject}, placing these on a timeline
                shows the shape of events, whether a sudden break, a slow drift or a series of
                escalations, and helps you tell a coherent story.""",
            ),
            _beat(
                "Different experiences of the same events",
                """The same events looked very different depending on who you were and where you stood.
                Accounts by participants, officials, opponents and bystanders often disagree. Comparing
                them is one of the most rewarding ways to study {subject}, because the disagreements
                reveal the interests, fears and assumptions of the time.""",
            ),
        ),
        _section(
            ("Consequences and Legacy", "Why It Still Matters"),
            _beat(
                "Immediate and long-term consequences",
                """Consequences unfold on different timescales. Some effects of {subject} were felt at
                once, in changes of power, borders, laws or daily life; others appeared only over
                generations. Separating immediate from long-term effects, and intended from unintended
                ones, gives a more honest picture than a simple list of results.""",
            ),
            _beat(
                "How it is remembered",
                """Finally, consider **legacy**: how {subject} has been remembered, commemorated, taught and
                argued over since. Memory is itself historical, and different societies or groups may tell
                very different stories about the same past. Asking who tells the story today, and why,
                connects the topic to the present.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "One famous person or a single event caused {subject}.",
            """Major historical changes have several interacting causes; individuals and triggers matter,
            but only within wider conditions.""",
        ),
        (
            "The way {subject} turned out was inevitable.",
            """People at the time faced real choices and uncertainty, and outcomes that look inevitable in
            hindsight often hinged on contingent decisions.""",
        ),
        (
            "There is one agreed, neutral account of {subject}.",
            """Historians interpret evidence differently and sources reflect the views of their authors, so
            accounts have to be compared.""",
        ),
        (
            "People involved in {subject} thought and behaved just as we would today.",
            """Values, knowledge and constraints differed, so actions need to be understood in their own
            context before they are judged.""",
        ),
    ),
    quiz=(
        _Question(
            "What is the difference between a long-term cause and a trigger of {subject}?",
            "A long-term cause builds pressure; a trigger sets events off",
            (
                "A trigger is always more important than any long-term cause",
                "Long-term causes come after the event, triggers before it",
                "There is no difference, since the two terms mean the same thing",
            ),
            "Deep causes explain why a situation was unstable; triggers explain why change came when it did.",
        ),
        _Question(
            "Which of these is a primary source for {subject}?",
            "A letter written by someone who lived through it",
            (
                "A recent textbook chapter that summarises it",
                "A documentary produced long afterwards with expert interviews",
                "An encyclopedia article written about it",
            ),
            "Primary sources come from participants or witnesses at the time; the others are later accounts.",
        ),
        _Question(
            "Why do accounts of {subject} sometimes disagree?",
            "Writers use different sources and ask different questions",
            (
                "Only one account can ever be properly based on evidence",
                "Historical facts themselves change from one decade to the next",
                "Disagreement shows that nothing about the past can be known",
            ),
            "Interpretation depends on the evidence chosen and the questions asked, so accounts differ.",
        ),
        _Question(
            "What does studying the legacy of {subject} involve?",
            "Examining its lasting effects and how it is remembered",
            (
                "Listing the exact dates of all its main events in order",
                "Describing the world as it was just before it began",
                "Finding the single person who was responsible for it",
            ),
            "Legacy concerns what endured afterwards, including the memory and debates it left behind.",
        ),
        _Question(
            "Why is it a mistake to treat the outcome of {subject} as inevitable?",
            "People then faced real uncertainty and genuine choices",
            (
                "The outcome of the events is in fact still unknown today",
                "Historians agree that nothing at all could have been changed",
                "The events did not lead to any outcome that can be described",
            ),
            "Hindsight hides the uncertainty people faced, and with it the real choices they made.",
        ),
    ),
    takeaways=(
        """Understanding {subject} means holding context, causes, turning points and consequences together,
        and recognising that every account of it is an interpretation of evidence.""",
        """The most useful habits for studying {subject} are separating deep causes from triggers,
        comparing sources written from different viewpoints, and tracing how its legacy is still
        debated.""",
    ),
)

_SOCIETY = _Profile(
    slug="society",
    keywords=_keywords(
        """econom, inflation, recession, market, supply and demand, supply, demand, trade, tariff,
        tax, taxation, money, bank, banking, interest rate, stock, invest, finance, financial,
        budget, gdp, unemployment, capitalism, socialism, communism, democra, government, politic,
        election, voting, law, legal, constitution, policy, rights, human rights, justice,
        sociolog, social, society, inequality, poverty, globali, immigration, migration, urbani,
        media, propaganda, psychology, cognitive bias, bias, behavior, behaviour, marketing,
        business, entrepreneur, management, game theory, cryptocurrenc, welfare, citizenship,
        union, labour, labor, wage, pension, insurance, housing, education system, gesellschaft,
        wirtschaft"""
    ),
    kind="a social, political or economic topic",
    field="the social sciences",
    question="who is involved, what shapes their choices, and what are the consequences and debates?",
    lens="by identifying who is involved, the incentives and rules that shape their choices, and the "
    "evidence and debates around it",
    recap="the actors and their incentives, the rules and mechanisms that link choices to outcomes, and "
    "the debates about them",
    exercise="""Choose one recent news story connected with {subject} and identify the main actors, what
    each wants, the rules or constraints they face, and one outcome that different observers would judge
    differently.""",
    exercise_point="analyse one real news story about {subject}",
    next_step="""compare how two sources with different viewpoints explain {subject}, and look closely at
    the data each one relies on.""",
    objectives=(
        "Identify the main actors involved in {subject} and what each one wants.",
        "Explain how incentives and rules shape behaviour in {subject}.",
        "Describe how {subject} is measured and what those measures leave out.",
        "Distinguish factual claims from value judgements in debates about {subject}.",
        "Evaluate a proposal related to {subject} by weighing who gains, who loses and any side effects.",
    ),
    terms=(
        ("Actor", "An individual, group or organisation whose choices shape {subject}."),
        ("Incentive", "A reward, cost or risk that encourages or discourages a particular choice."),
        (
            "Institution",
            "A formal or informal set of rules, such as a law, market or norm, that shapes choices.",
        ),
        ("Unintended consequence", "An outcome of a policy or change that its designers did not aim for."),
        ("Indicator", "A measurable quantity used to track {subject}, limited by how it is defined."),
    ),
    prerequisites=(
        "Basic familiarity with how governments and markets operate",
        "Reading simple charts and statistics",
        "Openness to viewpoints you may not share",
    ),
    sections=(
        _section(
            ("Actors and Incentives", "Who Is Involved"),
            _beat(
                "The main actors",
                """Social and economic topics involve many actors: individuals, households, firms,
                governments and organised groups. Begin your study of {subject} by listing them and asking
                what each one wants and what resources it controls. Many apparent puzzles dissolve once
                you see the situation from each actor's point of view.""",
            ),
            _beat(
                "Incentives beyond money",
                """People respond to **incentives**: the rewards, costs and risks attached to their choices.
                Incentives are not only financial; status, security, fairness and identity matter too.
                Asking how incentives around {subject} shape behaviour explains outcomes nobody planned,
                and predicts how people might react to new rules.""",
            ),
        ),
        _section(
            ("Rules and Mechanisms", "How It Works"),
            _beat(
                "Institutions and rules",
                """Choices are made within **institutions**: laws, markets, norms, organisations and
                customs that set the rules of the game. For {subject}, identify which formal rules apply
                and which unwritten norms matter. Institutions explain why similar situations can lead to
                very different outcomes in different countries or periods.""",
            ),
            _beat(
                "From individual choices to collective outcomes",
                """Many social outcomes emerge from the interaction of countless individual decisions
                rather than from any single plan; prices, traffic and public opinion all arise this way.
                Understanding the mechanism that links individual choices to the collective outcome is
                often the key insight in {subject}.""",
            ),
            _beat(
                "How it is measured",
                """Because social systems are complex, claims about them need evidence. Find out how
                {subject} is measured, which data are collected and by whom, and what those measures leave
                out. A statistic is only as good as its definition, so understanding the measure is part
                of understanding the topic.""",
            ),
        ),
        _section(
            ("Debates and Trade-offs", "Different Perspectives"),
            _beat(
                "Facts and values",
                """Debates about {subject} are rarely only about facts; they also reflect different values,
                such as liberty, equality, security, efficiency or tradition. Separating factual
                disagreements, which evidence can help settle, from value disagreements, which require
                judgement, makes discussion clearer and more productive.""",
            ),
            _beat(
                "Winners, losers and unintended effects",
                """Policies and social changes usually create winners and losers, and sometimes
                consequences that nobody predicted. For any proposal related to {subject}, ask who
                benefits, who bears the costs, over what time frame, and what might happen that its
                supporters did not intend.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "Outcomes in {subject} are always the result of someone's deliberate plan.",
            """Many outcomes emerge from the interaction of many individual choices and institutions,
            without anyone intending them.""",
        ),
        (
            "Disagreements about {subject} are only about facts.",
            """Many disagreements reflect different values, which evidence alone cannot settle, alongside
            factual questions that it can.""",
        ),
        (
            "A single statistic tells the whole story of {subject}.",
            """Every measure has a definition and blind spots, so several indicators and their limits need
            to be considered together.""",
        ),
        (
            "People involved in {subject} respond only to money.",
            """Incentives include status, security, fairness and identity, so money alone often predicts
            behaviour poorly.""",
        ),
    ),
    quiz=(
        _Question(
            "What is an incentive in the context of {subject}?",
            "A reward, cost or risk attached to a choice",
            (
                "A law that forbids a particular choice outright",
                "A statistic that measures how an outcome changed",
                "A group of people who share the same views",
            ),
            "Incentives change the payoffs of choices, which is how they shape behaviour.",
        ),
        _Question(
            "In a debate about {subject}, which of these is a disagreement about values rather than facts?",
            "Whether fairness should count for more than efficiency",
            (
                "How many people a particular policy affected last year",
                "What exactly a particular official statistic measured",
                "Whether a certain law was passed in a given year or later",
            ),
            "Evidence settles factual questions, but weighing fairness against efficiency needs judgement.",
        ),
        _Question(
            "Why is it important to know how {subject} is measured?",
            "A measure's definition limits what it can show",
            (
                "Official measures are always perfectly accurate and complete",
                "Measurement has little bearing on social questions",
                "Only the most recent published figure really matters",
            ),
            "Every indicator reflects choices about what to count, so its definition limits what it reveals.",
        ),
        _Question(
            "What is an unintended consequence?",
            "An outcome its designers did not aim for or foresee",
            (
                "An outcome that was planned carefully from the very start",
                "A consequence that turns out to affect no one at all",
                "A result that by its nature can never be measured",
            ),
            "Complex systems respond in ways planners do not foresee, so side effects deserve scrutiny.",
        ),
        _Question(
            "Why can {subject} play out differently in different countries or periods?",
            "Laws, markets and norms differ and shape choices",
            (
                "People everywhere face exactly the same incentives",
                "Social outcomes are essentially a matter of pure chance",
                "Different places never collect any data about it",
            ),
            "The rules of the game differ by place and time, so the same pressures play out differently.",
        ),
    ),
    takeaways=(
        """Making sense of {subject} means seeing the actors and their incentives, the institutions that
        shape their choices, and the difference between factual and value-based disagreements.""",
        """Outcomes in {subject} usually emerge from many choices made within rules and institutions, so
        careful measurement and an eye for unintended effects are essential.""",
    ),
)

_ARTS = _Profile(
    slug="arts",
    keywords=_keywords(
        """literat, poetry, poem, poet, novel, fiction, shakespeare, sonnet, haiku, drama, theatre,
        theater, grammar, language, linguistic, syntax, vocabulary, rhetoric, metaphor, narrative,
        storytelling, art, painting, sculpture, impressionis, cubism, surrealis, baroque, gothic,
        architecture, film, cinema, opera, symphony, music theory, composer, mytholog, myth,
        translation, etymolog, dialect, essay, creative writing, novelist, tragedy, comedy,
        romanticism, modernism, literary, prose, harmony, melody, sprache, kunst, literatur"""
    ),
    kind="a subject in language, literature or the arts",
    field="the humanities and the arts",
    question="where does it come from, how is it made, and how can it be interpreted?",
    lens="by looking at its origins and context, the elements and techniques that shape it, and the ways "
    "it can be interpreted",
    recap="context and origins, form and technique, and interpretation grounded in evidence",
    exercise="""Choose one short example connected with {subject}, such as a passage, image, piece or
    scene, and write a paragraph that names one technique it uses and explains the effect it has on
    you.""",
    exercise_point="close-read one short example of {subject}",
    next_step="""explore more examples from different periods or creators, and read one critical essay to
    compare its interpretation with your own.""",
    objectives=(
        "Describe the historical and cultural context of {subject}.",
        "Identify key elements and techniques used in {subject} and explain their effects.",
        "Analyse a short example connected with {subject} through close reading.",
        "Construct an interpretation of {subject} supported by specific evidence.",
        "Compare your response to {subject} with another reader's or critic's view.",
    ),
    terms=(
        ("Form", "The overall structure or type of a work, such as a sonnet, symphony or novel."),
        ("Technique", "A deliberate way of handling words, sounds or images to create a particular effect."),
        ("Convention", "An expected feature of a form, which creators in {subject} may follow or break."),
        ("Close reading", "Careful attention to a short example in order to notice how it creates meaning."),
        ("Interpretation", "An argued account of what a work means, supported by evidence from the work."),
    ),
    prerequisites=(
        "Experience reading, listening to or viewing a few examples closely",
        "Willingness to describe your own reactions in words",
        "Basic knowledge of the period in which the works were made",
    ),
    sections=(
        _section(
            ("Context and Origins", "Where It Comes From"),
            _beat(
                "Historical and cultural background",
                """Works, forms and movements in the arts grow out of particular times, places and
                communities. Knowing the background of {subject}, including who created it, for whom and
                in response to what, explains choices that might otherwise seem odd. Context does not
                dictate meaning, but it widens the range of meanings you can notice.""",
            ),
            _beat(
                "Influences and traditions",
                """Nothing in the arts starts from nothing. Creators borrow from, react against and
                transform what came before them. Tracing the influences on {subject}, and the traditions
                it belongs to or breaks with, helps you see what is genuinely new about it and what it
                shares with related work.""",
            ),
        ),
        _section(
            ("Form and Technique", "How It Is Made"),
            _beat(
                "The building blocks",
                """Every art form has basic elements: words, sounds, structure, line, colour, movement or
                rhythm, depending on the medium. Naming the elements at work in {subject} gives you a
                vocabulary for what you notice, and moves you from 'I like it' towards explaining why it
                has the effect it does.""",
            ),
            _beat(
                "Techniques and their effects",
                """Techniques are deliberate ways of handling these elements, such as imagery, repetition,
                contrast, perspective or variation. The useful question is not only which techniques
                appear in {subject}, but what each one does: what it emphasises, what mood it creates, or
                how it guides the audience's attention.""",
            ),
            _beat(
                "Conventions, kept and broken",
                """Every form has **conventions** that audiences expect. Much of the interest in {subject}
                lies in how it uses these conventions and where it bends or breaks them. A broken
                convention is often the key to a strong interpretation, because it usually marks a
                deliberate choice.""",
            ),
        ),
        _section(
            ("Interpretation", "Reading It Closely"),
            _beat(
                "Close reading",
                """Interpretation starts with close attention to detail. Take a short example related to
                {subject} and look at it slowly: what exactly is there, what stands out, what repeats,
                what surprises you? Good interpretations are built from specific observations like these
                rather than from general impressions.""",
            ),
            _beat(
                "Supporting an interpretation with evidence",
                """Readers can reasonably interpret the same work in different ways, but not every reading
                is equally convincing. A strong interpretation of {subject} points to specific evidence,
                considers alternative readings and explains why it fits the details better. This is the
                core skill of criticism.""",
            ),
            _beat(
                "Personal response and audience",
                """Your own response is a legitimate starting point, provided you examine it. Ask why
                {subject} affects you as it does, and how audiences in other times or cultures might
                respond differently. Comparing responses reveals both the range of the work and the
                assumptions each audience brings to it.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "There is one correct meaning of {subject} that the audience must discover.",
            """Works support several interpretations; what matters is how well each one is supported by
            evidence from the work.""",
        ),
        (
            "Any interpretation of {subject} is as good as any other.",
            """Interpretations can be compared by how well they account for the details, and some are far
            better supported than others.""",
        ),
        (
            "Knowing the creator's biography tells you what {subject} means.",
            """Context can illuminate a work, but meaning also depends on form, technique and audience, not
            on biography alone.""",
        ),
        (
            "Technique in {subject} matters only to specialists.",
            """Technique is how a work produces its effects on every audience; noticing it simply makes
            those effects visible.""",
        ),
    ),
    quiz=(
        _Question(
            "What makes an interpretation of {subject} convincing?",
            "It rests on specific evidence and weighs alternatives",
            (
                "It matches the first impression that most people have",
                "It relies mainly on the facts of the creator's biography",
                "It avoids discussing particular details of the work",
            ),
            "Convincing readings are anchored in details and survive comparison with alternatives.",
        ),
        _Question(
            "Why is it useful to notice where {subject} breaks a convention?",
            "It often marks a deliberate choice worth interpreting",
            (
                "It shows that the creator did not know the rules of the form",
                "Conventions have no real bearing on what a work means",
                "It proves that the work is of poor quality overall",
            ),
            "Departures from what audiences expect usually signal intent, so they reward close attention.",
        ),
        _Question(
            "What does close reading involve?",
            "Looking slowly at details and the effects they create",
            (
                "Reading a summary of the work instead of the work itself",
                "Moving through the work quickly to grasp the general gist",
                "Focusing on how commercially successful the work was",
            ),
            "Close reading builds interpretation from specific observations rather than general impressions.",
        ),
        _Question(
            "How does knowing the context of {subject} help?",
            "It widens the meanings and choices you can notice",
            (
                "It fixes a single meaning that cannot then be questioned",
                "It replaces the need to study the work itself closely",
                "It matters only for dating the work precisely",
            ),
            "Context illuminates choices and references without dictating a single meaning.",
        ),
        _Question(
            "Which question best moves you from liking {subject} to analysing it?",
            "Which technique creates this effect, and how?",
            (
                "Is this better than the other works I already know?",
                "How popular was this when it first appeared?",
                "How long did it take the creator to finish it?",
            ),
            "Analysis links an effect to the technique that produces it, which is what the question asks.",
        ),
    ),
    takeaways=(
        """Appreciating {subject} deeply means combining its context, the techniques that shape it and a
        careful interpretation grounded in specific evidence.""",
        """The central skill with {subject} is moving from first impressions to an interpretation that names
        techniques, explains their effects and stands up to alternative readings.""",
    ),
)

_CONCEPT = _Profile(
    slug="concept",
    keywords=(),  # the fallback: chosen when no other category's keywords match
    kind="a general concept",
    field="several fields of knowledge",
    question="what exactly is it, what is it made of, and how do you recognise and use it?",
    lens="by defining it carefully, breaking it into parts, testing it against examples, and connecting "
    "it to other ideas",
    recap="a working definition, its main parts, examples and non-examples, and its connections to other "
    "ideas",
    exercise="""Write a one-sentence definition of {subject}, then list two clear examples, one borderline
    case and one non-example, and explain in a sentence what separates them.""",
    exercise_point="define {subject} and test the definition with examples",
    next_step="""look up how two different sources define {subject}, note where they agree and differ, and
    refine your own definition.""",
    objectives=(
        "Define {subject} in your own words, naming its essential features.",
        "Distinguish {subject} from at least one related or easily confused idea.",
        "Identify the main parts of {subject} and describe how they relate.",
        "Classify examples, borderline cases and non-examples of {subject}, justifying each decision.",
        "Explain how {subject} connects to at least one other field or idea.",
    ),
    terms=(
        (
            "Definition",
            "A short, precise statement of what {subject} is, naming its distinguishing features.",
        ),
        ("Essential feature", "A property that something must have to count as an instance of {subject}."),
        ("Example", "A concrete case that has all the essential features of {subject}."),
        ("Non-example", "A case that resembles {subject} but lacks at least one essential feature."),
        (
            "Borderline case",
            "A case where it is unclear whether the definition applies, useful for refining it.",
        ),
    ),
    prerequisites=(
        "General reading comprehension",
        "A willingness to write short explanations in your own words",
        "Some everyday familiarity with the idea",
    ),
    sections=(
        _section(
            ("Defining It", "A Working Definition"),
            _beat(
                "A working definition",
                """A good definition is short, precise and usable. Try to state what {subject} is in one
                sentence, naming the broader category it belongs to and the features that set it apart
                from related ideas. Your first attempt does not need to be perfect: refining a definition
                as you learn is part of understanding.""",
            ),
            _beat(
                "Related and contrasting ideas",
                """Ideas become clearer when set beside their neighbours. Identify concepts that are often
                confused with {subject}, and ones that stand in contrast to it. Stating each difference
                explicitly, in a sentence, sharpens your definition and guards against treating
                similar-sounding ideas as the same.""",
            ),
        ),
        _section(
            ("Key Parts and Relationships", "How It Is Structured"),
            _beat(
                "Main components or aspects",
                """Most concepts can be broken into a few components, aspects or conditions. Listing the
                parts of {subject} turns a single abstract word into something you can examine piece by
                piece. Ask which parts are **essential**, so that without them it would no longer be the
                same thing, and which are merely typical.""",
            ),
            _beat(
                "How the parts relate",
                """Parts matter because of how they relate: one may cause another, depend on it, limit it
                or balance it. A simple diagram of these relationships is often more illuminating than a
                paragraph of prose. It shows at a glance how {subject} hangs together, and where a change
                in one part would affect the rest.""",
            ),
        ),
        _section(
            ("Examples and Non-examples", "Recognising It in Practice"),
            _beat(
                "Clear examples",
                """Abstract ideas are understood through concrete cases. Collect a few clear examples of
                {subject} from different settings, and for each one point to the features that make it an
                example. Variety matters: examples that differ on the surface but share the essential
                features show what the concept really is.""",
            ),
            _beat(
                "Borderline cases and non-examples",
                """Equally instructive are borderline cases and **non-examples**: situations that look
                similar but lack an essential feature. Deciding whether a tricky case counts as
                {subject}, and explaining why, is one of the best tests of understanding, and often shows
                where your definition needs to be more precise.""",
            ),
            _beat(
                "Connections and uses",
                """Finally, consider why the concept exists at all. People use {subject} to describe,
                explain, predict or decide something. Asking what questions it helps answer, and which
                fields rely on it, shows its value and connects it to ideas you already know.""",
            ),
        ),
    ),
    misconceptions=(
        (
            "Being able to name {subject} means understanding it.",
            """Recognising a term is not the same as being able to define it, give examples and explain how
            it connects to other ideas.""",
        ),
        (
            "A single example is enough to understand {subject}.",
            """One example mixes essential and incidental features; comparing several examples and
            non-examples shows which features matter.""",
        ),
        (
            "Ideas that sound similar to {subject} mean the same thing.",
            "Related ideas often differ in important ways, and stating how is part of understanding.",
        ),
        (
            "A definition of {subject}, once learned, never needs revising.",
            """Definitions are refined as understanding grows and as borderline cases show where they are
            too broad or too narrow.""",
        ),
    ),
    quiz=(
        _Question(
            "What makes a good working definition of {subject}?",
            "It names its category and what sets it apart",
            (
                "It uses as many technical words as it possibly can",
                "It lists every known example of the idea",
                "It repeats the term itself in slightly different words",
            ),
            "A definition places the idea in a category and says what sets it apart within that category.",
        ),
        _Question(
            "What is a non-example of {subject}?",
            "A case that looks similar but lacks an essential feature",
            (
                "A clear, typical instance that shows the concept at its best",
                "An example taken from a different language or culture",
                "A case that nobody has studied or described yet",
            ),
            "Non-examples resemble the concept on the surface, which makes them good tests of a definition.",
        ),
        _Question(
            "Why are borderline cases useful when studying {subject}?",
            "Deciding them shows where the definition is vague",
            (
                "They prove that the concept is ultimately meaningless",
                "They are best ignored because they only cause confusion",
                "They always turn out to be examples of the concept",
            ),
            "Hard cases expose vague parts of a definition, which is exactly where it can be improved.",
        ),
        _Question(
            "Why compare several different examples of {subject}?",
            "Their shared features reveal what is essential",
            (
                "To find the single example that defines it completely",
                "Because all examples of a concept are identical anyway",
                "To avoid having to write a definition of it at all",
            ),
            "Features that persist across varied examples are the essential ones; the rest are incidental.",
        ),
        _Question(
            "What is the best evidence that you understand {subject}?",
            "You can define it and sort examples from non-examples",
            (
                "You recognise the word immediately when you hear it used",
                "You have read at least one article that discusses it",
                "You can spell the term and pronounce it correctly",
            ),
            "Understanding shows in what you can do with an idea, not in recognising its name.",
        ),
    ),
    takeaways=(
        """Understanding {subject} means being able to define it precisely, break it into parts, sort
        examples from non-examples, and connect it to related ideas.""",
        """An idea like {subject} becomes usable once you can state its essential features, test them
        against tricky cases, and explain what it helps you do.""",
    ),
)

# Dict order is the tie-break order for classification: the more specific framings come first.
_PROFILES: dict[str, _Profile] = {
    profile.slug: _tidy(profile)
    for profile in (_SKILL, _MATHEMATICS, _TECHNOLOGY, _SCIENCE, _HEALTH, _HISTORY, _SOCIETY, _ARTS, _CONCEPT)
}
_SHARED_INTRO: _Section = _tidy(_INTRO)
_SHARED_WRAP_UP: _Section = _tidy(_WRAP_UP)
CATEGORIES: tuple[str, ...] = tuple(_PROFILES)


# --------------------------------------------------------------------------------------------------
# Topic text: normalising, display forms, classification
# --------------------------------------------------------------------------------------------------

_CODE_CHARS = frozenset("<>=/\\`*_[]{}|~^$%&@#:")  # a word containing one is code or markup, not prose
_KEPT_FORMAT_CHARS = frozenset("\u200c\u200d")  # zero-width (non-)joiners shape Persian, Indic and emoji
_SMALL_WORDS = frozenset(
    _keywords(
        "a, an, and, as, at, but, by, for, from, in, into, nor, of, on, or, per, the, to, via, vs, vs., with"
    )
)
_QUESTION_WORDS = frozenset(
    _keywords(
        """why, what, when, where, who, whom, whose, which, how, is, are, was, were, do, does, did, can,
        could, should, would, will"""
    )
)
_HOW_TO = re.compile(
    r"^(?:how\s+(?:to|do\s+(?:i|you|we)|can\s+(?:i|you|we)|should\s+(?:i|you|we))|learn(?:ing)?\s+"
    r"(?:how\s+)?to)\s+(?P<verb>[^\W\d_]+)(?P<rest>.*)$",
    re.IGNORECASE,
)
# Question framings that wrap a plain noun phrase, which prose can use directly.
_WRAPPERS = (
    re.compile(r"^how\s+(?:does|do|did)\s+(?P<core>.+?)\s+work[\s?!.]*$", re.IGNORECASE),
    re.compile(r"^how\s+(?!(?:does|do|did)\s)(?P<core>.+?)\s+works?[\s?!.]*$", re.IGNORECASE),
    re.compile(
        r"^(?:what\s+(?:is|are|was|were)|who\s+(?:is|was|were)|(?:an?\s+)?(?:introduction|intro)\s+to|"
        r"(?:the\s+)?basics\s+of|understanding|explain)\s+(?:an?\s+)?(?P<core>.+?)[\s?!.]*$",
        re.IGNORECASE,
    ),
)
# Phrases that frame the topic rather than name it, each with a score bonus for a category.
_FRAMING_BONUSES: tuple[tuple[re.Pattern[str], str, int], ...] = (
    (_HOW_TO, "skill", 3),
    (re.compile(r"\b(?:history|origins?|rise|fall|causes)\s+of\b"), "history", 2),
    (re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b|\b(?:bc|bce|ad)\b"), "history", 1),
)
_PLURALS = ("", "s", "es")
_PRONOUNS = frozenset(("it", "this", "that", "they", "these", "those", "he", "she"))
_IRREGULAR_GERUNDS = {"quit": "quitting", "program": "programming", "ski": "skiing", "travel": "travelling"}
_DOUBLES_FINAL_CONSONANT = re.compile(r"[^aeiou]*[aeiou][^aeiouwxy]")  # run -> running, knit -> knitting


def _normalize(topic: str) -> str:
    """One line of plain text: NFC, control characters dropped, every whitespace run a single space."""
    text = unicodedata.normalize("NFC", topic)
    kept = []
    for char in text:
        kind = unicodedata.category(char)
        if kind == "Cc":
            kept.append(" ")  # newlines, tabs and escapes become word breaks, never structure
        elif kind != "Cf" or char in _KEPT_FORMAT_CHARS:  # drop bidi overrides and other invisibles
            kept.append(char)
    return " ".join("".join(kept).split())


def _shorten(text: str, limit: int) -> str:
    """Cut at a word boundary near ``limit`` with an ellipsis; unspaced scripts are cut at the limit."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-\u2013\u2014") + "…"


def _capitalize_first(word: str) -> str:
    for index, char in enumerate(word):
        if char.isalpha():
            # title() rather than upper() keeps digraphs like "ǅ" right; "ß" would become "Ss", so leave it.
            capital = char.title()
            return word[:index] + capital + word[index + 1 :] if len(capital) == 1 else word
    return word


def _keeps_own_case(word: str) -> bool:
    """Acronyms, mixed case, codes and markup-like text ("TCP", "iPhone", "x86", "<b>") stay as typed."""
    return any(c.isupper() for c in word[1:]) or any(c.isdigit() or c in _CODE_CHARS for c in word)


def _title_case(text: str) -> str:
    words = text.split(" ")
    titled = []
    for index, word in enumerate(words):
        bare = word.strip("()[]{}\"'\u201c\u201d\u2018\u2019«»,:;").casefold()
        if _keeps_own_case(word):
            titled.append(word)
        elif 0 < index < len(words) - 1 and bare in _SMALL_WORDS:
            titled.append(word.lower())
        else:
            titled.append(_capitalize_first(word))
    return " ".join(titled)


def _gerund(verb: str) -> str:
    verb = verb.casefold()
    if verb in _IRREGULAR_GERUNDS:
        return _IRREGULAR_GERUNDS[verb]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and len(verb) > 2 and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if _DOUBLES_FINAL_CONSONANT.fullmatch(verb):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _subject_phrase(text: str) -> str:
    """The topic as a noun phrase that reads naturally mid-sentence in any template.

    "how to bake bread" becomes "baking bread", "what is machine learning?" becomes "machine learning",
    and any other question is quoted as "the question “…”" so templates never need to conjugate it.
    """
    how_to = _HOW_TO.match(text)
    if how_to:
        rest = how_to["rest"].rstrip(" ?!.")
        return _shorten(_gerund(how_to["verb"]) + rest, PROSE_LIMIT)
    for wrapper in _WRAPPERS:
        wrapped = wrapper.match(text)
        core = wrapped["core"].strip() if wrapped else ""
        # "how does it work" or "what is ?" name nothing, so they fall through to the question form.
        if re.search(r"\w", core) and core.casefold() not in _PRONOUNS:
            return _shorten(core, PROSE_LIMIT)
    first_word = text.split(" ", 1)[0].casefold()
    if text.endswith("?") or first_word in _QUESTION_WORDS:
        return f"the question “{_shorten(text, PROSE_LIMIT)}”"
    if first_word in ("the", "a", "an") and text[:1].isupper():
        text = text[:1].lower() + text[1:]  # "The French Revolution" reads as "the French Revolution"
    return _shorten(text, PROSE_LIMIT)


def _keyword_hits(keyword: str, words: Sequence[str], padded: str) -> bool:
    if " " in keyword:
        return any(f" {keyword}{plural} " in padded for plural in _PLURALS)
    if not keyword.isascii():
        return keyword in padded  # scripts without spaces, and inflected non-English words
    return any(
        word in (keyword + plural for plural in _PLURALS) or (len(keyword) >= 5 and word.startswith(keyword))
        for word in words
    )


def _classify(text: str) -> str:
    folded = text.casefold()
    words = re.findall(r"\w+", folded)
    padded = f" {' '.join(words)} "
    scores = {slug: sum(_keyword_hits(k, words, padded) for k in p.keywords) for slug, p in _PROFILES.items()}
    for pattern, slug, bonus in _FRAMING_BONUSES:
        if pattern.search(folded):
            scores[slug] += bonus
    best = max(scores, key=lambda slug: scores[slug])  # max keeps the first of equal scores: dict order
    return best if scores[best] > 0 else FALLBACK_CATEGORY


def _level(text: str) -> str:
    words = set(re.findall(r"\w+", text.casefold()))
    if "advanced" in words:
        return "advanced"
    if "intermediate" in words:
        return "intermediate"
    return "introductory"


# --------------------------------------------------------------------------------------------------
# Deterministic choices and the per-topic context every step shares
# --------------------------------------------------------------------------------------------------


class _Dice:
    """Stable 'random' choices: each is a SHA-256 of the topic and a purpose, identical in every process."""

    def __init__(self, key: str) -> None:
        self._seed = hashlib.sha256(key.casefold().encode("utf-8")).digest()

    def number(self, purpose: str) -> int:
        return int.from_bytes(hashlib.sha256(self._seed + purpose.encode("utf-8")).digest()[:8], "big")

    def pick(self, options: Sequence[Any], purpose: str) -> Any:
        return options[self.number(purpose) % len(options)]

    def shuffled(self, items: Sequence[Any], purpose: str) -> list[Any]:
        order = sorted(range(len(items)), key=lambda i: self.number(f"{purpose}:{i}"))
        return [items[i] for i in order]

    def sample(self, items: Sequence[Any], count: int, purpose: str) -> list[Any]:
        """``count`` items, kept in their original order (objectives stay ordered from simple to hard)."""
        keep = sorted(sorted(range(len(items)), key=lambda i: self.number(f"{purpose}:{i}"))[:count])
        return [items[i] for i in keep]


@dataclass(frozen=True)
class _Context:
    profile: _Profile
    dice: _Dice
    slots: dict[str, str]

    def fill(self, template: str, **extra: str) -> str:
        return template.format_map({**self.slots, **extra})

    def sections(self) -> tuple[_Section, ...]:
        return (_SHARED_INTRO, *self.profile.sections, _SHARED_WRAP_UP)


def _context(topic: str, category: str, title: str | None = None) -> _Context:
    text = _normalize(topic) or _normalize(title or "")
    profile = _PROFILES.get(category, _PROFILES[FALLBACK_CATEGORY])
    base = {
        "subject": _subject_phrase(text),
        "title": _shorten(_normalize(title or "") or _title_case(text), TITLE_LIMIT),
    }
    slot_names = ("kind", "field", "question", "lens", "recap", "exercise", "exercise_point", "next_step")
    # Profile slots may mention {subject} themselves, so they are filled before the templates use them.
    slots = {**base, **{name: getattr(profile, name).format_map(base) for name in slot_names}}
    return _Context(profile, _Dice(text), slots)


def _analysis_context(analysis: TopicAnalysis) -> _Context:
    return _context(analysis.topic, analysis.category, analysis.title)


# --------------------------------------------------------------------------------------------------
# The four steps
# --------------------------------------------------------------------------------------------------


def analyze_topic(topic: str) -> TopicAnalysis:
    """Classify the topic and derive its title, level, objectives, key terms and prerequisites.

    Raises ``ValueError`` for a topic with no visible text.
    """
    text = _normalize(topic)
    if not text:
        raise ValueError("topic is empty")
    category = _classify(text)
    level = _level(text)
    ctx = _context(topic, category)
    profile, dice = ctx.profile, ctx.dice
    terms = [KeyTerm(ctx.slots["title"], ctx.fill(_TOPIC_TERM))]
    terms += [
        KeyTerm(term, ctx.fill(definition)) for term, definition in dice.sample(profile.terms, 4, "terms")
    ]
    prerequisites = [ctx.fill(p) for p in dice.sample(profile.prerequisites, 2, "prerequisites")]
    if level != "introductory":
        prerequisites = [ctx.fill(_LEVEL_PREREQUISITE), *prerequisites[:1]]
    return TopicAnalysis(
        topic=topic,
        title=ctx.slots["title"],
        category=category,
        level=level,
        objectives=[ctx.fill(o) for o in dice.sample(profile.objectives, 4, "objectives")],
        key_terms=terms,
        prerequisites=prerequisites,
    )


def generate_outline(analysis: TopicAnalysis) -> Outline:
    """An introduction, the category's own sections, and a closing section that applies the lesson."""
    ctx = _analysis_context(analysis)
    return Outline(
        sections=[
            OutlineSection(
                title=ctx.dice.pick(section.titles, f"title:{section.titles[0]}"),
                points=[ctx.fill(beat.point) for beat in section.beats],
            )
            for section in ctx.sections()
        ]
    )


def _explanation(section: OutlineSection, ctx: _Context, by_title: dict[str, _Section]) -> str:
    template = by_title.get(section.title)
    if template is not None:
        paragraphs = [
            ctx.fill(ctx.dice.pick(beat.paragraphs, f"paragraph:{template.titles[0]}:{index}"))
            for index, beat in enumerate(template.beats)
        ]
    else:
        # A section we did not write: explain its own title and (at most two) points as plain text.
        points = [_normalize(p).rstrip(".") for p in section.points if _normalize(p)][: len(_FOREIGN_POINTS)]
        paragraphs = [ctx.fill(_FOREIGN_OPENING, section=_normalize(section.title))]
        paragraphs += [
            ctx.fill(pattern, point=point) for pattern, point in zip(_FOREIGN_POINTS, points, strict=False)
        ]
        if not points:
            paragraphs.append(ctx.fill(_FOREIGN_CLOSING))
    return "\n\n".join(paragraphs)


def create_content(analysis: TopicAnalysis, outline: Outline) -> LessonContent:
    """One Markdown explanation per outline section, in order, plus misconceptions and a quiz."""
    ctx = _analysis_context(analysis)
    profile, dice = ctx.profile, ctx.dice
    by_title = {title: section for section in ctx.sections() for title in section.titles}
    explanations = [_explanation(section, ctx, by_title) for section in outline.sections]
    misconceptions = [
        Misconception(ctx.fill(claim), ctx.fill(correction))
        for claim, correction in dice.sample(profile.misconceptions, 3, "misconceptions")
    ]
    questions = dice.sample(profile.quiz, QUIZ_SIZE, "quiz")
    # A shuffled range hands every question a different answer slot, so position is never a giveaway.
    positions = dice.shuffled(range(QUIZ_SIZE), "answer-positions")
    quiz = []
    for question, position in zip(questions, positions, strict=True):
        choices = [
            ctx.fill(d) for d in dice.shuffled(question.distractors, f"distractors:{question.question}")
        ]
        choices.insert(position, ctx.fill(question.answer))
        quiz.append(
            QuizQuestion(ctx.fill(question.question), choices, position, ctx.fill(question.explanation))
        )
    return LessonContent(explanations=explanations, misconceptions=misconceptions, quiz=quiz)


def write_summary(analysis: TopicAnalysis, outline: Outline, content: LessonContent) -> str:
    """Three sentences: what the lesson covered, the key takeaway, and what to do next."""
    del content  # the summary describes the lesson's shape, which the outline and analysis already give
    ctx = _analysis_context(analysis)
    sentences = (
        ctx.dice.pick(_SUMMARY_OPENINGS, "summary-opening"),
        ctx.dice.pick(ctx.profile.takeaways, "summary-takeaway"),
        ctx.dice.pick(_SUMMARY_CLOSINGS, "summary-closing"),
    )
    return " ".join(ctx.fill(sentence, count=str(len(outline.sections))) for sentence in sentences)
