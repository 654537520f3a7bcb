"""Fact tables for the embedded datasets (checked by hand; stable facts only)."""

# country, capital, continent
COUNTRIES = [
    ("France", "Paris", "Europe"),
    ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"),
    ("the Netherlands", "Amsterdam", "Europe"),
    ("Belgium", "Brussels", "Europe"),
    ("Austria", "Vienna", "Europe"),
    ("Sweden", "Stockholm", "Europe"),
    ("Norway", "Oslo", "Europe"),
    ("Denmark", "Copenhagen", "Europe"),
    ("Finland", "Helsinki", "Europe"),
    ("Poland", "Warsaw", "Europe"),
    ("Greece", "Athens", "Europe"),
    ("Ireland", "Dublin", "Europe"),
    ("Hungary", "Budapest", "Europe"),
    ("the Czech Republic", "Prague", "Europe"),
    ("Romania", "Bucharest", "Europe"),
    ("the United Kingdom", "London", "Europe"),
    ("Iceland", "Reykjavik", "Europe"),
    ("Japan", "Tokyo", "Asia"),
    ("China", "Beijing", "Asia"),
    ("India", "New Delhi", "Asia"),
    ("South Korea", "Seoul", "Asia"),
    ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"),
    ("the Philippines", "Manila", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"),
    ("Pakistan", "Islamabad", "Asia"),
    ("Bangladesh", "Dhaka", "Asia"),
    ("Nepal", "Kathmandu", "Asia"),
    ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"),
    ("Iran", "Tehran", "Asia"),
    ("Iraq", "Baghdad", "Asia"),
    ("Afghanistan", "Kabul", "Asia"),
    ("Egypt", "Cairo", "Africa"),
    ("Kenya", "Nairobi", "Africa"),
    ("Nigeria", "Abuja", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"),
    ("Ghana", "Accra", "Africa"),
    ("Morocco", "Rabat", "Africa"),
    ("Algeria", "Algiers", "Africa"),
    ("Senegal", "Dakar", "Africa"),
    ("Uganda", "Kampala", "Africa"),
    ("Zimbabwe", "Harare", "Africa"),
    ("Zambia", "Lusaka", "Africa"),
    ("Angola", "Luanda", "Africa"),
    ("Tunisia", "Tunis", "Africa"),
    ("Canada", "Ottawa", "North America"),
    ("the United States", "Washington, D.C.", "North America"),
    ("Mexico", "Mexico City", "North America"),
    ("Cuba", "Havana", "North America"),
    ("Jamaica", "Kingston", "North America"),
    ("Brazil", "Brasília", "South America"),
    ("Argentina", "Buenos Aires", "South America"),
    ("Chile", "Santiago", "South America"),
    ("Peru", "Lima", "South America"),
    ("Colombia", "Bogotá", "South America"),
    ("Venezuela", "Caracas", "South America"),
    ("Ecuador", "Quito", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Paraguay", "Asunción", "South America"),
    ("Australia", "Canberra", "Oceania"),
    ("New Zealand", "Wellington", "Oceania"),
    ("Fiji", "Suva", "Oceania"),
]

# Chinese country name, Chinese capital name
COUNTRIES_ZH = [
    ("法国", "巴黎"),
    ("德国", "柏林"),
    ("日本", "东京"),
    ("英国", "伦敦"),
    ("意大利", "罗马"),
    ("西班牙", "马德里"),
    ("加拿大", "渥太华"),
    ("澳大利亚", "堪培拉"),
    ("俄罗斯", "莫斯科"),
    ("埃及", "开罗"),
    ("巴西", "巴西利亚"),
    ("印度", "新德里"),
    ("韩国", "首尔"),
    ("泰国", "曼谷"),
    ("希腊", "雅典"),
    ("墨西哥", "墨西哥城"),
    ("阿根廷", "布宜诺斯艾利斯"),
    ("瑞典", "斯德哥尔摩"),
    ("挪威", "奥斯陆"),
    ("中国", "北京"),
    ("新西兰", "惠灵顿"),
    ("肯尼亚", "内罗毕"),
    ("葡萄牙", "里斯本"),
    ("荷兰", "阿姆斯特丹"),
]

# atomic number, symbol, name, group description
ELEMENTS = [
    (1, "H", "hydrogen", "a nonmetal"),
    (2, "He", "helium", "a noble gas"),
    (3, "Li", "lithium", "an alkali metal"),
    (4, "Be", "beryllium", "an alkaline earth metal"),
    (5, "B", "boron", "a metalloid"),
    (6, "C", "carbon", "a nonmetal"),
    (7, "N", "nitrogen", "a nonmetal"),
    (8, "O", "oxygen", "a nonmetal"),
    (9, "F", "fluorine", "a halogen"),
    (10, "Ne", "neon", "a noble gas"),
    (11, "Na", "sodium", "an alkali metal"),
    (12, "Mg", "magnesium", "an alkaline earth metal"),
    (13, "Al", "aluminium", "a post-transition metal"),
    (14, "Si", "silicon", "a metalloid"),
    (15, "P", "phosphorus", "a nonmetal"),
    (16, "S", "sulfur", "a nonmetal"),
    (17, "Cl", "chlorine", "a halogen"),
    (18, "Ar", "argon", "a noble gas"),
    (19, "K", "potassium", "an alkali metal"),
    (20, "Ca", "calcium", "an alkaline earth metal"),
    (26, "Fe", "iron", "a transition metal"),
    (29, "Cu", "copper", "a transition metal"),
    (30, "Zn", "zinc", "a transition metal"),
    (47, "Ag", "silver", "a transition metal"),
    (50, "Sn", "tin", "a post-transition metal"),
    (53, "I", "iodine", "a halogen"),
    (79, "Au", "gold", "a transition metal"),
    (80, "Hg", "mercury", "a transition metal"),
    (82, "Pb", "lead", "a post-transition metal"),
    (92, "U", "uranium", "an actinide"),
]

# order from the Sun, name, kind, one well-known fact
PLANETS = [
    (1, "Mercury", "rocky planet", "It is the smallest planet and the closest to the Sun."),
    (
        2,
        "Venus",
        "rocky planet",
        "Its thick carbon dioxide atmosphere makes it the hottest planet.",
    ),
    (3, "Earth", "rocky planet", "It is the only planet known to support life."),
    (4, "Mars", "rocky planet", "Iron oxide dust on its surface gives it a red colour."),
    (5, "Jupiter", "gas giant", "It is the largest planet in the Solar System."),
    (6, "Saturn", "gas giant", "It is famous for its wide, bright ring system."),
    (7, "Uranus", "ice giant", "It rotates on its side, with its axis tilted about 98 degrees."),
    (8, "Neptune", "ice giant", "It is the farthest planet from the Sun."),
]

ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]

# English word, French, Spanish, German
WORDS = [
    ("hello", "bonjour", "hola", "hallo"),
    ("thank you", "merci", "gracias", "danke"),
    ("water", "eau", "agua", "Wasser"),
    ("cat", "chat", "gato", "Katze"),
    ("dog", "chien", "perro", "Hund"),
    ("house", "maison", "casa", "Haus"),
    ("book", "livre", "libro", "Buch"),
    ("red", "rouge", "rojo", "rot"),
    ("green", "vert", "verde", "grün"),
    ("one", "un", "uno", "eins"),
    ("two", "deux", "dos", "zwei"),
    ("three", "trois", "tres", "drei"),
    ("goodbye", "au revoir", "adiós", "auf Wiedersehen"),
    ("bread", "pain", "pan", "Brot"),
    ("apple", "pomme", "manzana", "Apfel"),
    ("sun", "soleil", "sol", "Sonne"),
    ("moon", "lune", "luna", "Mond"),
    ("school", "école", "escuela", "Schule"),
    ("yes", "oui", "sí", "ja"),
    ("no", "non", "no", "nein"),
]
LANGUAGES = ["French", "Spanish", "German"]

# Chinese word, English
WORDS_ZH = [
    ("猫", "cat"),
    ("狗", "dog"),
    ("水", "water"),
    ("书", "book"),
    ("太阳", "sun"),
    ("月亮", "moon"),
    ("苹果", "apple"),
    ("朋友", "friend"),
    ("学校", "school"),
    ("红色", "red"),
    ("老师", "teacher"),
    ("面包", "bread"),
]

ANTONYMS = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("happy", "sad"),
    ("early", "late"),
    ("full", "empty"),
    ("strong", "weak"),
    ("rich", "poor"),
    ("tall", "short"),
    ("wet", "dry"),
    ("thick", "thin"),
    ("win", "lose"),
    ("push", "pull"),
    ("buy", "sell"),
    ("inside", "outside"),
    ("true", "false"),
    ("increase", "decrease"),
    ("before", "after"),
    ("always", "never"),
    ("entrance", "exit"),
    ("ancient", "modern"),
    ("asleep", "awake"),
    ("accept", "reject"),
    ("arrive", "depart"),
]

SIZE_WORDS = {"big", "small", "tall", "short", "thick", "thin", "strong", "weak"}

PLURALS = [
    ("child", "children"),
    ("mouse", "mice"),
    ("person", "people"),
    ("tooth", "teeth"),
    ("foot", "feet"),
    ("goose", "geese"),
    ("man", "men"),
    ("woman", "women"),
    ("leaf", "leaves"),
    ("knife", "knives"),
    ("box", "boxes"),
    ("city", "cities"),
    ("baby", "babies"),
    ("wolf", "wolves"),
    ("sheep", "sheep"),
    ("ox", "oxen"),
    ("potato", "potatoes"),
    ("hero", "heroes"),
    ("bus", "buses"),
    ("church", "churches"),
]

# sentence, sentiment
SENTIMENTS = [
    ("I loved this film; the acting was wonderful.", "positive"),
    ("The food was cold and the waiter was rude.", "negative"),
    ("What a fantastic day at the beach!", "positive"),
    ("My new phone stopped working after two days.", "negative"),
    ("The hotel room was clean, quiet and comfortable.", "positive"),
    ("I waited an hour and nobody answered my call.", "negative"),
    ("This book is a delight from the first page to the last.", "positive"),
    ("The concert was too loud and the sound was terrible.", "negative"),
    ("Our teacher explains everything clearly and patiently.", "positive"),
    ("The package arrived broken and late.", "negative"),
    ("I'm so proud of how well the team played tonight.", "positive"),
    ("The software crashes every time I open a file.", "negative"),
    ("The garden looks beautiful in spring.", "positive"),
    ("I regret buying these shoes; they hurt my feet.", "negative"),
    ("Thanks to your help, the move went smoothly.", "positive"),
    ("The train was cancelled again without any notice.", "negative"),
]

# hand-written paragraphs for the pretraining sample
PARAGRAPHS = [
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is "
    "lower, so water boils at a lower temperature, which is why cooking pasta on a mountain "
    "takes longer.",
    "Plants make their food through photosynthesis. Using energy from sunlight, they turn "
    "carbon dioxide from the air and water from the soil into glucose, and they release "
    "oxygen as a by-product.",
    "The water cycle moves water around the Earth. Water evaporates from oceans and lakes, "
    "condenses into clouds, falls as rain or snow, and flows back to the sea through rivers "
    "and underground.",
    "A year on Earth lasts about 365.25 days, the time the planet takes to orbit the Sun. "
    "The extra quarter day is why a leap year, with 366 days, comes every four years.",
    "The human heart has four chambers: two atria and two ventricles. The right side pumps "
    "blood to the lungs to pick up oxygen, and the left side pumps it to the rest of the body.",
    "Light travels at about 300,000 kilometres per second in a vacuum. Sunlight takes about "
    "eight minutes to reach the Earth.",
    "Sound needs a medium such as air, water or rock to travel. In air at room temperature it "
    "moves at about 343 metres per second, much slower than light.",
    "A triangle's angles always add up to 180 degrees. A right triangle has one angle of 90 "
    "degrees, and its longest side, the hypotenuse, lies opposite that angle.",
    "The Pythagorean theorem says that in a right triangle the square of the hypotenuse equals "
    "the sum of the squares of the other two sides. A triangle with sides 3, 4 and 5 is a "
    "well-known example.",
    "A prime number has exactly two divisors: one and itself. The first primes are 2, 3, 5, 7, "
    "11 and 13; 2 is the only even prime.",
    "Honeybees communicate the direction of flowers with a waggle dance. The angle of the dance "
    "shows the direction relative to the Sun, and its length shows the distance.",
    "The Moon has phases because we see different amounts of its sunlit half as it orbits the "
    "Earth. A full cycle from new moon to new moon takes about 29.5 days.",
    "Ice floats because water expands when it freezes. Solid ice is less dense than liquid "
    "water, so lakes freeze from the top down and fish survive the winter below.",
    "Mammals are warm-blooded animals that feed their young with milk. Whales, bats and humans "
    "are all mammals, even though they live in very different ways.",
    "A computer stores numbers in binary, using only the digits 0 and 1. The decimal number 5, "
    "for example, is written 101 in binary.",
    "Vaccines train the immune system to recognise a germ without causing the disease. If the "
    "real germ arrives later, the body can fight it off quickly.",
    "Earthquakes happen when rocks along a fault in the Earth's crust slip suddenly. The energy "
    "released travels through the ground as seismic waves.",
    "Rainbows appear when sunlight passes through raindrops. Each drop bends and reflects the "
    "light, splitting it into colours from red on the outside to violet on the inside.",
    "Recycling paper saves trees and energy. Used paper is mixed with water into a pulp, "
    "cleaned of ink, and pressed into new sheets.",
    "The Great Wall of China was built and rebuilt over many centuries to protect northern "
    "borders. Much of what stands today dates from the Ming dynasty.",
    "Bread rises because yeast feeds on sugars in the dough and releases carbon dioxide. The "
    "gas forms bubbles that the stretchy gluten in the dough traps.",
    "Magnets have a north pole and a south pole. Opposite poles attract each other and like "
    "poles repel, which is how a compass needle lines up with the Earth's magnetic field.",
    "A healthy adult needs about seven to nine hours of sleep a night. During sleep the body "
    "repairs tissue and the brain sorts and stores memories.",
    "The Amazon rainforest in South America is the largest tropical rainforest in the world. "
    "It is home to an enormous variety of plants, insects, birds and mammals.",
]
