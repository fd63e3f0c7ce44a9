"""Text the offline stand-in tokenizers and models are trained on.

Written for this project. It only has to cover the characters and words the course's
notebooks use (English prompts, a few German/French translations, Japanese sentences,
chat turns) so that the tiny tokenizers round-trip them and the tiny models learn to
stop (emit EOS) after a plausible answer.
"""

# (English, German, French) triples for the T5 "translate English to X:" tasks.
PARALLEL: list[tuple[str, str, str]] = [
    ("The weather is nice today.", "Das Wetter ist heute schön.", "Il fait beau aujourd'hui."),
    ("The house is wonderful.", "Das Haus ist wunderbar.", "La maison est magnifique."),
    ("I like green tea.", "Ich mag grünen Tee.", "J'aime le thé vert."),
    ("Where is the station?", "Wo ist der Bahnhof?", "Où est la gare?"),
    ("The cat sleeps on the sofa.", "Die Katze schläft auf dem Sofa.", "Le chat dort sur le canapé."),
    ("We are learning about transformers.", "Wir lernen über Transformer.", "Nous apprenons les transformeurs."),
    ("The book is on the table.", "Das Buch liegt auf dem Tisch.", "Le livre est sur la table."),
    ("My brother reads a newspaper.", "Mein Bruder liest eine Zeitung.", "Mon frère lit un journal."),
    ("The train is late again.", "Der Zug ist wieder spät.", "Le train est encore en retard."),
    ("She drinks coffee every morning.", "Sie trinkt jeden Morgen Kaffee.", "Elle boit du café chaque matin."),
    ("The children play in the garden.", "Die Kinder spielen im Garten.", "Les enfants jouent dans le jardin."),
    ("This model translates short sentences.", "Dieses Modell übersetzt kurze Sätze.", "Ce modèle traduit des phrases courtes."),
    ("The capital of France is Paris.", "Die Hauptstadt von Frankreich ist Paris.", "La capitale de la France est Paris."),
    ("Thank you very much.", "Vielen Dank.", "Merci beaucoup."),
    ("Good morning, teacher.", "Guten Morgen, Lehrer.", "Bonjour, professeur."),
    ("The river flows to the sea.", "Der Fluss fließt ins Meer.", "La rivière coule vers la mer."),
    ("I have two apples.", "Ich habe zwei Äpfel.", "J'ai deux pommes."),
    ("The computer is very fast.", "Der Computer ist sehr schnell.", "L'ordinateur est très rapide."),
    ("Open the window, please.", "Öffne bitte das Fenster.", "Ouvre la fenêtre, s'il te plaît."),
    ("The students write a report.", "Die Studenten schreiben einen Bericht.", "Les étudiants écrivent un rapport."),
    ("It is raining in Tokyo.", "Es regnet in Tokio.", "Il pleut à Tokyo."),
    ("The dog runs in the park.", "Der Hund läuft im Park.", "Le chien court dans le parc."),
    ("We eat dinner at seven.", "Wir essen um sieben zu Abend.", "Nous dînons à sept heures."),
    ("The sky is blue.", "Der Himmel ist blau.", "Le ciel est bleu."),
    ("He plays the piano well.", "Er spielt gut Klavier.", "Il joue bien du piano."),
    ("The library opens at nine.", "Die Bibliothek öffnet um neun.", "La bibliothèque ouvre à neuf heures."),
    ("Attention is all you need.", "Aufmerksamkeit ist alles, was man braucht.", "L'attention est tout ce dont vous avez besoin."),
    ("The encoder reads the input.", "Der Encoder liest die Eingabe.", "L'encodeur lit l'entrée."),
    ("The decoder writes the output.", "Der Decoder schreibt die Ausgabe.", "Le décodeur écrit la sortie."),
    ("Learning takes time.", "Lernen braucht Zeit.", "Apprendre prend du temps."),
]

# Task prompts the T5 notebooks use besides translation (answers kept short).
T5_TASKS: list[tuple[str, str]] = [
    ("question: What color is the sky?", "blue"),
    ("question: What is the capital of France?", "Paris"),
    ("classify sentiment: I really loved this movie! It was amazing.", "positive"),
    ("classify sentiment: The food was cold and the service was slow.", "negative"),
    ("summarize: The Transformer uses self-attention instead of recurrence.", "Transformers use attention."),
    ("complete the following sentence: In the morning, people usually start", "their day with breakfast."),
    ("The capital of France is", "Paris"),
]

# Free English text: lecture-style sentences and the course's prompts.
ENGLISH: list[str] = [
    "The best thing about AI is its ability to learn from data.",
    "Write an email apologizing to Sarah for the tragic gardening mishap. Explain how it happened.",
    "Create a funny joke about chickens.",
    "Create a character profile for an RPG game in JSON format.",
    "Summarize the key findings of the paper provided.",
    "You are an expert in large language models.",
    "Roger has 5 tennis balls. He buys 2 more cans of tennis balls. Each can has 3 tennis balls.",
    "How many tennis balls does he have now? The answer is 11.",
    "The cafeteria had 23 apples. If they used 20 to make lunch and bought 6 more, how many apples do they have?",
    "Let's think step by step.",
    "Tokenizers split text into tokens, and every token has an id in the vocabulary.",
    "The model turns token ids into embedding vectors and predicts the next token.",
    "Greedy decoding picks the most probable token; sampling draws from the distribution.",
    "Temperature sharpens or flattens the probability distribution.",
    "Top-p sampling keeps the smallest set of tokens whose probability reaches p.",
    "Fine-tuning with LoRA trains small low-rank matrices next to frozen weights.",
    "A king and a queen live in a castle with a prince and a princess.",
    "Apples, oranges and bananas are fruits; cars, trains and planes are vehicles.",
    "Hello world! Numbers like 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 appear too.",
    "description name armor weapon: a brave knight named Aria wears plate armor and carries a sword.",
    "Arr, matey! The pirate captain sails the seven seas looking for treasure.",
    "Please answer in one sentence.",
]

# Japanese sentences: the course is taught in Japanese and the tokenizer exercise
# round-trips Japanese text.
JAPANESE: list[str] = [
    "こんにちは、世界。",
    "今日は良い天気ですね。",
    "大規模言語モデルは次のトークンを予測します。",
    "トークナイザーは文章をトークンに分割します。",
    "東京は日本の首都です。",
    "私は機械学習を勉強しています。",
    "猫が窓のそばで寝ています。",
    "海賊の船長は宝物を探しています。",
    "ありがとうございます。",
    "エンコーダとデコーダの役割を説明してください。",
]


# Instructions only the Flan-T5 stand-in is trained on, as Flan-T5 is T5 tuned on instructions: it answers
# these (the t5_decoding notebook's prompt and the grader's among them) and T5-small, which never saw them,
# does not. Without them the two tiny models learn the same pairs and may answer a new instruction alike,
# and whether they do depends on the machine's floating point (a check on FLAN_PROMPT must tell them apart).
FLAN_TASKS: list[tuple[str, str]] = [
    ("Answer the question: What is the boiling point of water in Celsius?", "100 degrees Celsius."),
    ("Answer the question: How many legs does a spider have?", "eight"),
    ("Answer the question: Which planet do we live on?", "the Earth"),
    ("Summarize: The meeting moved from Monday to Thursday because the room was booked.",
     "The meeting is now on Thursday."),
    ("Summarize: The train was late, so the students walked to school in the rain.", "The students walked to school."),
    ("Summarize: After a long search the pirates found the treasure on a small island.", "The pirates found the treasure."),
]


def t5_pairs() -> list[tuple[str, str]]:
    """(source, target) pairs for the tiny T5-small, in the course's task format."""
    pairs = [(f"translate English to German: {en}", de) for en, de, _ in PARALLEL]
    pairs += [(f"translate English to French: {en}", fr) for en, _, fr in PARALLEL]
    return pairs + T5_TASKS


def flan_pairs() -> list[tuple[str, str]]:
    """(source, target) pairs for the tiny Flan-T5: T5-small's, and the instructions."""
    return t5_pairs() + FLAN_TASKS


def all_text() -> list[str]:
    """Every line of text, for tokenizer training."""
    lines = [s for triple in PARALLEL for s in triple]
    lines += [s for pair in T5_TASKS for s in pair]
    return lines + ENGLISH + JAPANESE
