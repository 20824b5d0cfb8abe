"""Realistic Chinese personal and vehicle identifiers with correct check digits (all invented)."""

from __future__ import annotations

import numpy as np

from fleetgate.formats.identifiers import resident_id_check_char, vin_check_digit

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰晨浩宇欣怡子涵梓轩雨萱思远佳琪俊杰")
MOBILE_PREFIXES = ["134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182",
                   "183", "187", "188", "130", "131", "132", "155", "156", "185", "186", "133", "153", "180",
                   "181", "189", "199", "177", "166"]
# Pudong New Area, Xuhui, Minhang, Jing'an, Huangpu, Yangpu (GB/T 2260 codes)
DISTRICTS = {"310115": "浦东新区", "310104": "徐汇区", "310112": "闵行区", "310106": "静安区",
             "310101": "黄浦区", "310110": "杨浦区"}
ROADS = ["环湖西二路", "申港大道", "临港大道", "世纪大道", "淮海中路",
         "南京西路", "漕溪北路", "莘庄路", "四平路", "张江路"]
# World manufacturer identifiers of automakers building in China (SAIC-VW, FAW-VW, BYD, SAIC, Tesla Shanghai)
WMIS = ["LSV", "LFV", "LGX", "LSJ", "LRW"]
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O
PROVINCES = "沪沪沪沪苏浙皖京粤"


def vin(rng: np.random.Generator, year_code: str = "T") -> str:
    """A VIN with a correct ISO 3779 check digit (position 9)."""
    wmi = str(rng.choice(WMIS))
    vds = "".join(rng.choice(list(VIN_CHARS), 5))
    plant = str(rng.choice(list("ABCDEFGH")))
    serial = "".join(rng.choice(list("0123456789"), 6))
    draft = f"{wmi}{vds}0{year_code}{plant}{serial}"
    return draft[:8] + vin_check_digit(draft) + draft[9:]


def person_name(rng: np.random.Generator) -> str:
    """A common Chinese full name of two or three characters."""
    given = "".join(rng.choice(GIVEN, int(rng.integers(1, 3))))
    return str(rng.choice(SURNAMES)) + given


def mobile(rng: np.random.Generator) -> str:
    """An 11-digit mainland mobile number with a real carrier prefix."""
    return str(rng.choice(MOBILE_PREFIXES)) + "".join(rng.choice(list("0123456789"), 8))


def resident_id(rng: np.random.Generator) -> str:
    """An 18-character resident ID with a Shanghai district code and a GB 11643 check character."""
    district = str(rng.choice(list(DISTRICTS)))
    year = int(rng.integers(1960, 2004))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, 29))
    seq = int(rng.integers(0, 1000))
    first17 = f"{district}{year:04d}{month:02d}{day:02d}{seq:03d}"
    return first17 + resident_id_check_char(first17)


def address(rng: np.random.Generator) -> str:
    """A Shanghai street address."""
    district = DISTRICTS[str(rng.choice(list(DISTRICTS)))]
    return f"上海市{district}{rng.choice(ROADS)}{int(rng.integers(1, 2000))}弄{int(rng.integers(1, 40))}号"


def plate(rng: np.random.Generator, color: str) -> str:
    """A plate number: blue and yellow have 7 characters, green new-energy plates 8."""
    province = str(rng.choice(list(PROVINCES)))
    city = str(rng.choice(list("ABCDEFGHJK")))
    if color == "green":
        # small new-energy cars: D (battery electric) or F (hybrid) then five digits
        return f"{province}{city}{rng.choice(['D', 'F'])}{''.join(rng.choice(list('0123456789'), 5))}"
    tail = "".join(rng.choice(list(PLATE_LETTERS[:10] + "0123456789" * 2), 5))
    return f"{province}{city}{tail}"
