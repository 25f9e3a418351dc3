"""Constant vocabulary data for the rules describe backend (`regionedit_jax.describe.rules`).

Word lists and lookup tables used to parse instructions and rewrite captions: determiners,
pronouns, stop words, irregular plurals, mass nouns, colours, materials, sizes, general
adjectives, actions, conditions (season / time / weather / light), media and styles; the
word-list regexes that clean and split instructions; and the noun groups, colours, objects,
styles, conditions and backgrounds that `write_instructions` draws edits from.
"""

from __future__ import annotations

import re

# Nouns, determiners, attributes, conditions and media -----------------------------------------

DETERMINERS = frozenset(
    "a an the some this that these those his her its their my your our one two three four five "
    "six seven eight nine ten several many few all both each every".split()
)
_PLURAL_DETS = frozenset(
    "some these those two three four five six seven eight nine ten several many few all both".split()
)
_DEFINITE = frozenset("the this that these those his her its their my your our".split())
_PRONOUNS = frozenset("it him her them he she they this that".split())
_STOP = frozenset(
    "on in at of with by from to into onto near under over above below behind beside besides "
    "between next through across around against along for and or but while as is are was were "
    "has have inside outside beneath underneath atop upon among amongst during after before than "
    "like without via".split()
)
_IRREGULAR = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "mouse": "mice",
    "goose": "geese",
    "foot": "feet",
    "tooth": "teeth",
    "knife": "knives",
    "leaf": "leaves",
    "wolf": "wolves",
    "shelf": "shelves",
    "loaf": "loaves",
    "tomato": "tomatoes",
    "potato": "potatoes",
    "cactus": "cacti",
    "ox": "oxen",
    "calf": "calves",
    "scarf": "scarves",
}
_SINGULAR = {plural: single for single, plural in _IRREGULAR.items()}
_UNCHANGING = frozenset("sheep fish deer aircraft".split())
_MASS = frozenset(
    "snow water grass sand fire smoke fog rain ice space lava mud milk coffee juice text light "
    "sunlight graffiti fur hair food fruit bread rice pasta cheese jewelry furniture traffic wine "
    "beer tea steam lightning confetti glitter foliage moss ivy wood leather paper plastic metal "
    "art paint chocolate cream frosting sugar salt gold silver makeup lipstick money wallpaper "
    "scenery nature darkness sunshine".split()
)
COLOURS = frozenset(
    "red orange yellow green blue purple pink brown black white gray grey silver gold golden "
    "beige teal turquoise violet magenta cyan navy maroon crimson lavender indigo".split()
)
_COLOUR_MODIFIERS = frozenset("light dark bright pale deep pastel neon hot baby navy".split())
_MATERIALS = {
    "wood": "wooden",
    "wooden": "wooden",
    "wool": "woolen",
    "woolen": "woolen",
    "metal": "metal",
    "metallic": "metallic",
    "steel": "steel",
    "iron": "iron",
    "glass": "glass",
    "plastic": "plastic",
    "stone": "stone",
    "marble": "marble",
    "leather": "leather",
    "paper": "paper",
    "brick": "brick",
    "concrete": "concrete",
    "crystal": "crystal",
    "ice": "ice",
    "silk": "silk",
    "denim": "denim",
    "ceramic": "ceramic",
    "porcelain": "porcelain",
    "cardboard": "cardboard",
    "clay": "clay",
    "bronze": "bronze",
    "copper": "copper",
    "chocolate": "chocolate",
    "velvet": "velvet",
    "straw": "straw",
    "bamboo": "bamboo",
    "rubber": "rubber",
}
_SIZES = {
    "big": "big",
    "bigger": "big",
    "large": "large",
    "larger": "large",
    "huge": "huge",
    "giant": "giant",
    "enormous": "enormous",
    "massive": "massive",
    "small": "small",
    "smaller": "small",
    "tiny": "tiny",
    "tinier": "tiny",
    "little": "little",
    "tall": "tall",
    "taller": "tall",
    "short": "short",
    "shorter": "short",
    "long": "long",
    "longer": "long",
    "wide": "wide",
    "wider": "wide",
    "thin": "thin",
    "thinner": "thin",
    "fat": "fat",
    "fatter": "fat",
    "miniature": "miniature",
}
_GENERAL = {
    "older": "old",
    "younger": "young",
    "happier": "happy",
    "sadder": "sad",
    "angrier": "angry",
    "brighter": "bright",
    "darker": "dark",
    "cleaner": "clean",
    "dirtier": "dirty",
    "prettier": "pretty",
    "cuter": "cute",
    "shinier": "shiny",
    "fluffier": "fluffy",
    "scarier": "scary",
    "wetter": "wet",
    "newer": "new",
}
_KNOWN_GENERAL = frozenset(
    "old young new cute happy sad angry fluffy shiny dirty clean beautiful ugly pretty wet dry "
    "broken rusty striped spotted furry scary bright dark".split()
)
_VAGUE = frozenset(
    "better nicer good great cool awesome best interesting different perfect nice amazing "
    "beautiful prettier fancy fancier".split()
)
_ACTIONS = {
    "smile": "smiling",
    "laugh": "laughing",
    "cry": "crying",
    "jump": "jumping",
    "dance": "dancing",
    "fly": "flying",
    "sleep": "sleeping",
    "run": "running",
    "sit": "sitting",
    "stand": "standing",
    "swim": "swimming",
    "wave": "waving",
    "frown": "frowning",
    "walk": "walking",
    "sing": "singing",
    "yawn": "yawning",
    "roar": "roaring",
    "bark": "barking",
}
_TRANSITIVE = {
    "wear": "wearing",
    "hold": "holding",
    "carry": "carrying",
    "eat": "eating",
    "ride": "riding",
    "drink": "drinking",
    "read": "reading",
    "play": "playing",
    "use": "using",
    "hug": "hugging",
    "chase": "chasing",
    "kick": "kicking",
    "throw": "throwing",
    "watch": "watching",
}
# Conditions: group -> phrase. A new condition replaces any phrase of the same group.
_CONDITIONS = {
    **dict.fromkeys(("winter", "wintry", "wintertime"), ("season", "in winter")),
    **dict.fromkeys(("summer", "summertime"), ("season", "in summer")),
    **dict.fromkeys(("spring", "springtime"), ("season", "in spring")),
    **dict.fromkeys(("autumn", "fall", "autumnal"), ("season", "in autumn")),
    **dict.fromkeys(("night", "nighttime", "night time", "midnight"), ("time", "at night")),
    **dict.fromkeys(("evening",), ("time", "in the evening")),
    **dict.fromkeys(("morning",), ("time", "in the morning")),
    **dict.fromkeys(("day", "daytime", "daylight", "noon", "midday"), ("time", "during the day")),
    **dict.fromkeys(("sunset", "dusk", "golden hour"), ("time", "at sunset")),
    **dict.fromkeys(("sunrise", "dawn"), ("time", "at sunrise")),
    **dict.fromkeys(("snow", "snowy", "snowing"), ("weather", "in the snow")),
    **dict.fromkeys(("rain", "rainy", "raining"), ("weather", "in the rain")),
    **dict.fromkeys(("fog", "foggy", "misty", "mist"), ("weather", "in the fog")),
    **dict.fromkeys(("sunny", "sunshine"), ("weather", "on a sunny day")),
    **dict.fromkeys(("cloudy", "overcast"), ("weather", "on a cloudy day")),
    **dict.fromkeys(("storm", "stormy", "thunderstorm"), ("weather", "during a storm")),
    **dict.fromkeys(("bright", "brighter", "well lit"), ("light", "in bright light")),
    **dict.fromkeys(("dark", "darker", "dim", "dimmer"), ("light", "in dim light")),
}
# Media and looks: a style edit rewrites the caption as "<medium> of <caption>".
_MEDIA = {
    "painting": "a painting",
    "oil painting": "an oil painting",
    **dict.fromkeys(
        ("watercolor", "watercolour", "watercolor painting", "watercolour painting"),
        "a watercolor painting",
    ),
    **dict.fromkeys(("sketch", "pencil sketch", "pencil"), "a pencil sketch"),
    "drawing": "a drawing",
    "pencil drawing": "a pencil drawing",
    "charcoal drawing": "a charcoal drawing",
    "ink drawing": "an ink drawing",
    **dict.fromkeys(("cartoon", "cartoonish", "cartoony"), "a cartoon"),
    **dict.fromkeys(("comic", "comic book"), "a comic book illustration"),
    "anime": "an anime illustration",
    "manga": "a manga illustration",
    **dict.fromkeys(("pixel art", "8-bit", "8 bit"), "pixel art"),
    "mosaic": "a mosaic",
    "stained glass": "a stained glass window",
    **dict.fromkeys(("photo", "photograph", "real photo"), "a photo"),
    **dict.fromkeys(("realistic", "photorealistic", "photo-realistic"), "a photorealistic image"),
    **dict.fromkeys(
        ("black and white", "black & white", "b&w", "grayscale", "greyscale", "monochrome", "black and white photo"),
        "a black and white photo",
    ),
    **dict.fromkeys(("vintage", "retro", "old", "old-fashioned", "antique", "vintage photo"), "a vintage photo"),
    "sepia": "a sepia photo",
    "polaroid": "a polaroid photo",
    "sculpture": "a sculpture",
    "statue": "a statue",
    **dict.fromkeys(("3d render", "3d", "cgi"), "a 3d render"),
    "lego": "a lego model",
    "origami": "an origami model",
    "embroidery": "an embroidery",
    "poster": "a poster",
    "postcard": "a postcard",
    **dict.fromkeys(("impressionist", "impressionism"), "an impressionist painting"),
    **dict.fromkeys(("cubist", "cubism"), "a cubist painting"),
    "pop art": "a pop art print",
    "ukiyo-e": "a ukiyo-e print",
    "crayon": "a crayon drawing",
}
_MEDIUM_HEADS = frozenset(
    "painting drawing sketch illustration render rendering photo photograph art poster mosaic "
    "sculpture cartoon print engraving artwork mural collage etching woodcut animation".split()
)
_MEDIUM_PREFIX = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:(?:close[- ]up|black and white|colou?r|vintage|old|aerial|blurry|"
    r"stock|digital|realistic|pencil|oil|watercolou?r|3d|low angle)\s+)*"
    r"(?:photo|photograph|picture|image|painting|drawing|illustration|sketch|shot|view|render|"
    r"rendering|portrait|cartoon|snapshot|close[- ]up|closeup|pixel art|print|poster|sculpture|"
    r"statue|model|mosaic|window)\s+of\s+",
    re.I,
)

# Instruction parsing --------------------------------------------------------------------------

_POLITE_PREFIX = re.compile(
    r"^(?:please|pls|plz|kindly|hey|hi|ok|okay|so|now|then|and|just|also|simply|"
    r"can you|could you|would you|will you|can we|could we|would you mind|"
    r"i want you to|i'd like you to|i would like you to|i need you to|i want to|i'd like to|"
    r"i would like to|let's|let us|try to|go ahead and|help me|you should|we should|"
    r"you need to|you must|edit|instruction|task)\b[\s,:!-]*",
    re.I,
)
_POLITE_SUFFIX = re.compile(
    r"[\s,]*\b(?:please|pls|for me|thanks|thank you|thx|if possible|if you can|if you could|"
    r"in the image|in this image|in the picture|in this picture|in the photo|in this photo|"
    r"in the scene|in this scene|in the photograph|asap)$",
    re.I,
)
_IMAGE_NOUNS = re.compile(
    r"\b(?:(?:the|this|that|our|my|your)\s+(?:whole\s+|entire\s+)?"
    r"(?:image|photo|picture|pic|photograph|scene|shot|frame)|everything|the whole thing)\b",
    re.I,
)
_VERBS = (
    r"add|put|place|insert|include|draw|paint|remove|delete|erase|eliminate|take|get|replace|"
    r"substitute|swap|switch|exchange|change|turn|make|transform|convert|give|have|let|set|move|"
    r"colou?r|recolou?r|dye|render|redraw|blur"
)
_STEP_SPLIT = re.compile(rf"\s*(?:;|,?\s+(?:and then|and|then|also|plus)\s+|,\s+)(?=(?:{_VERBS})\b)", re.I)

_PRON = r"(?:it|him|her|them|this|that)"
_PREPS = (
    r"on top of|in front of|next to|close to|to the left of|to the right of|onto|on|into|inside|in|"
    r"at|to|near|beside|behind|underneath|under|above|below|over|around|by|atop|among|against"
)
_LOCATION_START = re.compile(rf"\s+({_PREPS})\s+(?=(?:the|his|her|its|their|this|that|my|your|it|him|them)\b)", re.I)

# Instruction writing --------------------------------------------------------------------------

_GROUPS: dict[str, tuple[str, ...]] = {
    "animal": (
        "cat",
        "dog",
        "fox",
        "rabbit",
        "tiger",
        "lion",
        "bear",
        "wolf",
        "horse",
        "cow",
        "sheep",
        "panda",
        "zebra",
        "elephant",
        "deer",
        "monkey",
        "pig",
        "goat",
        "squirrel",
    ),
    "bird": ("bird", "duck", "owl", "parrot", "eagle", "penguin", "swan", "chicken", "pigeon"),
    "vehicle": ("car", "truck", "bus", "van", "bicycle", "motorcycle", "taxi", "jeep", "tractor"),
    "vessel": ("boat", "ship", "sailboat", "canoe", "yacht", "kayak"),
    "fruit": ("apple", "orange", "banana", "pear", "lemon", "peach", "strawberry", "pineapple"),
    "food": ("cake", "pizza", "burger", "sandwich", "donut", "cookie", "pie", "cupcake"),
    "furniture": ("chair", "sofa", "couch", "bench", "table", "desk", "bed", "stool"),
    "person": ("man", "woman", "boy", "girl", "robot", "astronaut", "knight"),
    "clothing": ("hat", "cap", "helmet", "crown", "scarf", "jacket", "shirt", "dress", "sweater"),
    "building": ("house", "cabin", "castle", "church", "barn", "tower", "lighthouse", "cottage"),
    "plant": ("tree", "cactus", "bush", "flower", "rose", "sunflower", "tulip"),
    "object": (
        "cup",
        "mug",
        "vase",
        "bottle",
        "bowl",
        "lamp",
        "clock",
        "book",
        "guitar",
        "umbrella",
        "ball",
        "balloon",
        "kite",
    ),
}
_NOUN_GROUP = {noun: group for group, nouns in _GROUPS.items() for noun in nouns}
_WEARERS = frozenset(("animal", "person"))
_COLOURABLE = frozenset(_GROUPS) - {"person"}
_EDIT_COLOURS = ("red", "blue", "green", "yellow", "purple", "pink", "orange", "black", "white", "golden", "silver")
_ADD_OBJECTS = (
    "a hot air balloon",
    "a rainbow",
    "a butterfly",
    "a small bird",
    "a red balloon",
    "a kite",
    "a vase of flowers",
    "a cup of coffee",
    "a lamp",
    "fireworks",
    "a boat",
    "a moon",
    "a clock",
    "a potted plant",
)
_WEARABLES = ("a hat", "sunglasses", "a crown", "a scarf", "a bow tie", "a party hat")
_STYLE_EDITS = (
    "make it look like a watercolor painting",
    "turn it into a pencil sketch",
    "make it look like an oil painting",
    "make it a cartoon",
    "make it pixel art",
    "in the style of van gogh",
    "make it black and white",
    "make it look vintage",
    "make it look like a mosaic",
    "make it anime style",
)
_CONDITION_EDITS = (
    "make it winter",
    "make it night",
    "make it sunset",
    "make it rain",
    "make it autumn",
    "make it foggy",
    "make it a sunny day",
    "make it snowy",
)
_BACKGROUNDS = (
    "a beach",
    "a forest",
    "a city street",
    "mountains",
    "outer space",
    "a desert",
    "a snowy field",
    "a garden",
    "an underwater reef",
)
_KIND_WEIGHTS = (
    ("replace", 3),
    ("colour", 2),
    ("add", 2),
    ("remove", 1),
    ("style", 1),
    ("condition", 1),
    ("background", 1),
)
