"""Schwartz's ten basic human values: the names (vector order), their definitions, and a
"supports" / "opposes" statement of each for embedding-based detection."""

SCHWARTZ_VALUES = (
    "Self-Direction",
    "Stimulation",
    "Hedonism",
    "Achievement",
    "Power",
    "Security",
    "Conformity",
    "Tradition",
    "Benevolence",
    "Universalism",
)

# Defining goals after Schwartz (1992; 2012, "An Overview of the Schwartz Theory of Basic Values").
VALUE_DEFINITIONS = {
    "Self-Direction": "independent thought and action — choosing, creating, exploring",
    "Stimulation": "excitement, novelty and challenge in life",
    "Hedonism": "pleasure or sensuous gratification for oneself",
    "Achievement": "personal success through demonstrating competence according to social standards",
    "Power": "social status and prestige, control or dominance over people and resources",
    "Security": "safety, harmony and stability of society, of relationships and of self",
    "Conformity": (
        "restraint of actions, inclinations and impulses likely to upset or harm others "
        "and violate social expectations or norms"
    ),
    "Tradition": (
        "respect, commitment and acceptance of the customs and ideas that one's culture or religion provides"
    ),
    "Benevolence": (
        "preserving and enhancing the welfare of those with whom one is in frequent "
        "personal contact (family, friends, the in-group)"
    ),
    "Universalism": (
        "understanding, appreciation, tolerance and protection for the welfare of all people and for nature"
    ),
}

# (supports, opposes) for the embedding detector, written from the definitions and Schwartz's value
# items. Both poles of a value are stated in the same voice, as a stance someone would argue for:
# sentence embeddings barely register negation, and a bleak-sounding pole ("exploit your friends")
# would lose to any pleasant text whatever its stance.
VALUE_POLES = {
    "Self-Direction": (
        "Individuals have the right to decide for themselves: freedom to choose one's own beliefs, "
        "goals and way of life.",
        "Individuals must submit to the decisions of authorities and family about their beliefs, "
        "goals and way of life.",
    ),
    "Stimulation": (
        "People should seek excitement, adventure, novelty and daring challenges in life.",
        "People should prefer a calm, predictable routine and avoid adventure, risk and novelty.",
    ),
    "Hedonism": (
        "People should enjoy life and pursue pleasure, fun, comfort and gratification for themselves.",
        "People should live with self-denial and discipline, giving up pleasure, fun and comfort.",
    ),
    "Achievement": (
        "People should be ambitious and strive for personal success, competence and recognition.",
        "People should be modest and content, without striving to succeed or outperform others.",
    ),
    "Power": (
        "People should seek status, wealth and authority, with control over others and resources.",
        "People should share power equally, rejecting hierarchy, status and control over others.",
    ),
    "Security": (
        "Society should put safety, order and stability first, protecting people from danger and disorder.",
        "Society should accept risk, disorder and instability as the price of freedom and change.",
    ),
    "Conformity": (
        "People should obey rules, be polite and self-disciplined, honour their elders and avoid "
        "upsetting others.",
        "People should defy rules and social expectations and act as they wish, even if it upsets others.",
    ),
    "Tradition": (
        "People should respect and preserve the customs, rituals and religion handed down by their culture.",
        "Old customs and religious traditions are outdated and should be abandoned for modern, new "
        "ways of living.",
    ),
    "Benevolence": (
        "People should care for and help their family, friends and community, being loyal and honest "
        "with them.",
        "People should put their own interests before the needs of their family, friends and community.",
    ),
    "Universalism": (
        "People should protect the welfare of all humanity and nature: equality, justice, tolerance "
        "and the environment.",
        "People should care for their own group first, and need not worry about outsiders or nature.",
    ),
}
