"""The sample generator's own vocabulary: a made-up catalog and phrase book.

Every word here was written for loopworks; no review text is copied from anywhere.
"""

from __future__ import annotations

CATALOG = {
    "Knits": ("Tops", ("Tee", "Tunic", "Henley", "Tank"), ("Jersey", "Slub", "Ribbed", "Pima")),
    "Blouses": ("Tops", ("Blouse", "Button-Down", "Shell"), ("Silky", "Voile", "Poplin", "Crêpe")),
    "Sweaters": ("Tops", ("Cardigan", "Pullover", "Turtleneck"), ("Merino", "Cable", "Mohair")),
    "Fine gauge": ("Tops", ("Crewneck", "Sweater Tee"), ("Fine-Knit", "Cashmere-Blend")),
    "Dresses": ("Dresses", ("Midi Dress", "Maxi Dress", "Wrap Dress", "Shift Dress", "Slip Dress"),
                ("Linen", "Satin", "Eyelet", "Smocked", "Floral")),
    "Pants": ("Bottoms", ("Wide-Leg Pants", "Trousers", "Joggers", "Culottes"),
              ("Twill", "Linen", "Ponte")),
    "Jeans": ("Bottoms", ("Skinny Jeans", "Straight Jeans", "Bootcut Jeans"), ("Stretch", "Raw")),
    "Skirts": ("Bottoms", ("Pencil Skirt", "Pleated Skirt", "Midi Skirt"), ("Tweed", "Satin")),
    "Shorts": ("Bottoms", ("Shorts", "Bermuda Shorts"), ("Chambray", "Cotton", "Denim")),
    "Outerwear": ("Jackets", ("Parka", "Trench Coat", "Peacoat"), ("Wool", "Quilted", "Waxed")),
    "Jackets": ("Jackets", ("Blazer", "Denim Jacket", "Bomber"), ("Corduroy", "Suede", "Denim")),
    "Lounge": ("Intimate", ("Lounge Set", "Robe", "Lounge Pants"), ("Fleece", "Waffle", "Modal")),
    "Sleep": ("Intimate", ("Pajama Set", "Sleep Shirt", "Nightgown"), ("Flannel", "Cotton")),
    "Swim": ("Intimate", ("Swimsuit", "Bikini Top", "Cover-Up"), ("Ribbed", "Crochet")),
    "Intimates": ("Intimate", ("Bralette", "Camisole", "Slip"), ("Lace", "Silk", "Mesh")),
    "Legwear": ("Intimate", ("Leggings", "Tights"), ("Sculpting", "Opaque")),
    "Trend": ("Trend", ("Jumpsuit", "Poncho", "Cape"), ("Velvet", "Fringed", "Metallic")),
}
CLASS_WEIGHTS = (12, 9, 8, 4, 16, 8, 6, 5, 3, 4, 4, 4, 3, 3, 3, 2, 2)
LINES = ("Meadow", "Harbor", "Juniper", "Solstice", "Willow", "Cove", "Aster", "Birch",
          "Marlowe", "Seaside", "Everyday", "Weekend", "Café", "Lark", "Ember", "Tidal")

# The phrase book. "[pool]" starts a pool, " ~ " separates templates, line breaks are spaces;
# {a|b|c} are alternatives. Every template expands to all its variants, and a draw picks a
# template uniformly, then one of its variants.
PHRASES = """
[pos] The {fabric|material|knit} is {so soft|buttery soft|thick but soft|light and breathable} and
{drapes beautifully|feels expensive|barely wrinkles|holds its shape}. ~ {I love|Absolutely
love|Really love} the {colour|color|shade}; it's {even prettier in person|exactly like the photos|a
rich, deep tone|perfect for fall}. ~ Fits {true to size|perfectly|like a glove|just right} {through
the shoulders|in the waist|across the hips|everywhere}. ~ {Super|Really|Incredibly} comfortable, {I
could wear it all day|like pajamas but dressier|even after a long shift}. ~ Got {so many|a ton
of|several} compliments {the first time I wore it|at work|at a wedding|at dinner}. ~
{Great|Excellent|Fantastic} value for the price{, especially on sale|, honestly|}. ~ Shipping was
{fast|quicker than expected|super quick}, and it arrived {well packaged|neatly folded|a day early}.
~ Washed it {twice|several times|on cold} and it {came out looking new|didn't shrink at all|kept its
colour}, great. ~ The {length|cut|silhouette} is {flattering|perfect|lovely}{ on my petite frame| on
my curvy figure| for my tall frame|}. ~ {Beautiful|Gorgeous|Stunning}
{detailing|stitching|embroidery} {on the collar|along the hem|on the sleeves}. ~ It's {my new
favorite|the best thing I've bought this year|a staple in my closet now}. ~ The "{stretch|give}" in
this is {just right|perfect}, {so it moves with you|no bagging out by evening}. ~ {Pairs|Goes}
{well|nicely} with {jeans|leggings|boots|sneakers|heels}{, dressed up or down|}. ~ Bought it in {two
colours|a second colour|another shade} because I {love|adore} it{ so much|}. ~ The pockets are
{deep|a great bonus|perfectly placed}, which I {love|always appreciate}. ~ {Very|So|Really|Très}
chic{ and comfortable| and easy to style|}, perfect for the {café|office}. ~ It{’|'|'}s
{lightweight|warm without being bulky|soft against the skin}, {perfect|great} for
{travel|layering|summer evenings|chilly mornings}. ~ {The size chart was accurate|Sizing was spot
on}, so no returns needed, love that. ~ Runs a touch big, but {sizing down|the smaller size} {worked
perfectly|was perfect}. ~ The lining is {smooth|soft|well finished} and {the seams lie flat|there's
no scratchy tag}, great quality. ~ Flattering{ and comfortable|, comfortable, and easy to care
for|}{ —| -|,|!} I {love|really love} it. ~ {High|Excellent|Great} quality{ for sure| all around|,
well made}, {worth every penny|better than I hoped}. ~ My {husband|partner|best friend} said it's
the {nicest|most flattering} thing I own.
[mix] The {colour|print} is {pretty|lovely|nice}, but the {fabric|material} is {thinner than I
expected|a little scratchy|just average}. ~ {It's okay|It's fine|Decent}{ for the price|, nothing
special|}, though {the fit is a bit off|the sleeves are long|it wrinkles easily}. ~
{Comfortable|Soft} enough, but {it runs a bit large|the length is awkward|it pills a little after
washing}. ~ {Cute|Nice} {style|design}, {mediocre|so-so|average} {quality|stitching}. ~ I
{might|may} keep it{ if it goes on sale|, still undecided|}; {the waist fits|the colour works} but
{the hips are tight|the hem is uneven}. ~ {Not bad|Not terrible}, {not great|not amazing} either. ~
Fits {okay|alright} {in the shoulders|through the body}, {a bit snug|slightly loose} {in the arms|at
the waist}. ~ Looks better {on the model|online} than in person, but it's {wearable|fine for
lounging|okay for errands}. ~ {Shipping was slow|It arrived late}, but the {quality|fabric} is
{decent|acceptable|fine}. ~ {Wish|I wish} it {came in petite|had pockets|were lined|were a little
longer}{, otherwise it's fine|}. ~ It's {a mixed bag|middle of the road}{ for me| overall|}:
{good idea, meh execution|some good, some bad}. ~ I {have mixed feelings|am on the fence} about
{this one|the fit|the fabric}.
[neg] The {fabric|material} is {thin and cheap|see-through|scratchy and itchy|rough on the skin}{
and not worth the price|, honestly disappointing|}. ~ {Unfortunately|Sadly}, it {runs very
small|runs huge|was far too tight in the chest|was way too long}{, even in my usual size|}. ~ The
{colour|color} {looks nothing like the photos|was dull and faded|is much darker in person}{, very
disappointed|}. ~ {After one wash|After the first wash} it {shrank a full size|started pilling|lost
its shape|faded badly}. ~ {Poor|Terrible|Cheap} {stitching|quality|construction}; {a seam came
apart|threads were hanging everywhere|the hem was crooked}{ out of the bag| after one wear|}. ~
Shipping took {three weeks|forever|almost a month}, and {the package arrived damaged|it came
wrinkled and smelling odd}. ~ {I returned it|Sent it back|It's going back}{ the same day|
immediately|}. ~ {Way|Far} {overpriced|too expensive} for {what you get|this quality|such thin
fabric}. ~ The {zipper|buttons|straps} {broke|fell off|snagged} {the first time I wore it|within a
week|almost immediately}. ~ {Very|So|Really} {disappointed|unhappy|let down}{ with this purchase| by
the quality|}. ~ The "{one size fits all|relaxed fit|petite}" label is {a joke|misleading}, it {fit
no one in my family|swallowed me whole|was boxy and unflattering}. ~ It {wrinkles|creases} {if you
just look at it|the moment you sit down|all day}, {so annoying|which is frustrating}. ~
{Uncomfortable|Itchy|Stiff} {from the start|all day|around the neckline}, I {couldn't wait to take
it off|gave up after an hour}. ~ The {cut|shape} is {boxy|frumpy|odd} and {unflattering|does nothing
for me}{ on my petite frame| on a curvy body|}. ~ Doesn{’|'|'}t look anything like the model's, {not
worth it|save your money}. ~ Customer service {never answered|was no help|took weeks to reply} {when
I asked about an exchange|about the defect}. ~ {The pockets are fake|There are no real pockets},
{what a letdown|and the lining bunches up}. ~ Ordered my usual {S|M|L|XL} and {couldn't zip it up|it
hung like a sack}, disappointed. ~ Smelled {strongly of chemicals|like plastic} {out of the
package|even after washing}. ~ The {crêpe|fabric|material} feels {like plastic|cheap}, {très
décevant|what a waste}.
[neutral] For reference, I'm {5'1"|5'4"|5'6"|5'9"} and {115|130|145|170} lbs, and I ordered the
{XS|S|M|L|XL}. ~ I usually wear a {size 2|size 6|size 10|size 14} in {this brand|most
brands|dresses}. ~ Bought this {for a trip|for work|as a gift|for everyday wear|on a whim}. ~ I wore
it {to the office|on vacation|around the house|to a birthday party}{ last weekend| yesterday|}. ~ My
{sister|mom|friend|daughter} {has the same one|tried it on too|saw it first}. ~ Machine washed on
{cold|gentle}, hung to dry. ~ Ordered online{ during the sale| after reading the reviews|} and
picked it up in store.
[short_pos] {Love it|Adore it|Perfect}, {fits perfectly|so comfy|great price}! ~ {Great|Beautiful}
quality, {so comfortable|love the colour}. ~ No complaints at all. ~ Soft, cozy, and
flattering. ~ Love love love this "{dress|top|piece}"!
[short_mix] It's okay, runs a bit {big|small}. ~ Cute but the fabric is thin. ~ Meh. Fine for the
price. ~ Not bad, not great. ~ {Decent|Average}, nothing special really.
[short_neg] Cheap fabric, {sent it back|returned it}. ~ Runs tiny. Very disappointed. ~ Fell apart
after one wash. ~ Terrible fit, {returned it|so disappointing}. ~ Itchy and see-through.
{Returned|Awful}.
[title_pos] {Love it|Love this|Obsessed}{!|} ~ {Perfect|Gorgeous} {summer|fall|everyday}
{dress|staple|piece} ~ Great quality, great price ~ Fits like a dream ~ "Buy it in every colour" ~
So comfortable{!|} ~ Compliment magnet
[title_mix] {Cute, but|Nice, but} runs {small|large} ~ It's okay ~ So-so quality ~ Mixed feelings ~
Not quite right ~ {Meh|Hmm}
[title_neg] {Disappointed|So disappointed} ~ {Cheap|Thin} fabric ~ Returned it ~ Save your money ~
Nothing like the photo ~ Terrible fit
[close_pos] {Highly|Definitely} recommend{!|.} ~ Would buy again. ~ A new favourite{!|.} ~ Go for
it, you won't regret it.
[close_mix] {Keeping it for now|Might return it|Still deciding}{.|, we'll see.} ~ Maybe wait for a
sale.
[close_neg] {Would not|Won't} buy again. ~ Save your money. ~ {Returning|Returned} it{.|, ugh.} ~
Skip this one.
[open_pre] {I ordered|Bought|Picked up|Got|Went with} the
[open_end] {navy|olive|ivory|rust|charcoal|blush|sage|mustard|black|heather
grey|crème|bordeaux|cobalt|oatmeal}{.|.| last month.| for spring.| on sale.| online.}
"""
