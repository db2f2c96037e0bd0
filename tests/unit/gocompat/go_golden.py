# ruff: noqa: E501
"""Go's own outputs for the template/fmt emulation tests (verbatim, hence the long lines).

Produced by running Go's text/template, fmt and encoding/json (Go 1.19; identical to Go 1.15, which weave 2.8
is built with, for every case kept here) over the report decoded from
``sample_report(encryption=True).to_json()``, with Go type names mapped back to weave's packages
(``*router.NetworkRouterStatus``, ``*paxos.Status``, ``ipam.Status``). Each error row is
(template, phase, message, output written before the error).
"""

GO_TEMPLATE_OUTPUTS = [
    ("{{.Router.Name}}({{.Router.NickName}})", "4a:0f:f6:ec:1c:93(host1)"),
    (
        "{{range $i, $c := .Router.Connections}}{{$i}}:{{$c.State}} {{end}}",
        "0:established 1:pending 2:retrying 3:failed 4:connecting ",
    ),
    ("{{range $k, $v := .Router.CaptureStats}}{{$k}}={{$v}}{{end}}", "FlowMisses=42"),
    (
        "{{range .Router.Connections}}{{.Attrs}}|{{.Attrs.mtu}}|{{end}}",
        "map[mtu:1410 name:fastdp]|1410|map[encrypted:true mtu:1376 name:fastdp]|1376|map[]|<no value>|map[]|<no value>|map[]|<no value>|",
    ),
    (
        "{{.IPAM.Paxos}}|{{.IPAM.PendingClaims}}|{{.Router.CaptureStats}}|{{.Proxy}}",
        "<nil>|[]|map[FlowMisses:42]|{[unix:///var/run/weave/weave.sock]}",
    ),
    (
        "{{.VersionCheck}}|{{.VersionCheck.NextCheckAt}}",
        "up to date; next check at 2016/04/06 12:30:00|2016-04-06 12:30:00 +0000 UTC",
    ),
    ("{{(index .Router.MACs 0).LastSeen}}", "2015-08-06 18:55:00 +0000 UTC"),
    ('{{index .Router.CaptureStats "FlowMisses"}} {{index .Router.CaptureStats "x"}}', "42 0"),
    (
        "{{with .IPAM.Paxos}}x{{else}}none{{end}} {{if .IPAM.Entries}}entries{{end}} {{range .IPAM.PendingClaims}}x{{else}}empty{{end}}",
        "none entries empty",
    ),
    (
        "{{if eq .Router.ProtocolMinVersion .Router.ProtocolMaxVersion}}{{.Router.ProtocolMaxVersion}}{{else}}{{.Router.ProtocolMinVersion}}..{{.Router.ProtocolMaxVersion}}{{end}}",
        "1..2",
    ),
    (
        '{{printf "%-21v|%12.12v|%8d|%04.1f%%" .Router.Name (index .DNS.Entries 0).ContainerID 524288 50.0}}',
        "4a:0f:f6:ec:1c:93    |eebd81120ee4|  524288|50.0%",
    ),
    (
        '{{eq .DNS.TTL 1}} {{ne .Router.Name "x"}} {{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge "b" "a"}} {{eq "a" "b" "a"}}',
        "true true true true false true true",
    ),
    ('{{and 1 0 2}} {{or 0 "" "x"}} {{not 0}}', "0 x true"),
    ('{{print 1 2 "a" "b" 3 true nil}}', "1 2ab3 true <nil>"),
    ('{{println 1 "a"}}', "1 a\n"),
    ('{{len .Router.Connections | printf "%03d"}} {{"a" | printf "%s-%s" "b"}}', "005 b-a"),
    ('{{$x := .Router.Name}}{{$x}}{{$x = "y"}} {{$x}}', "4a:0f:f6:ec:1c:93 y"),
    ('a {{- " b " -}} c', "a b c"),
    ("x {{- /* comment */ -}} y", "xy"),
    ("{{if 0}}a{{else if 2}}b{{else}}c{{end}}", "b"),
    ("{{'a'}} {{'\\n'}} {{1.5}} {{1e3}} {{0x10}} {{017}} {{-3}}", "97 10 1.5 1000 16 15 -3"),
    (
        '{{len "héllo"}} {{index "abc" 1}} {{slice "abcdef" 1 3}} {{slice .Router.Targets 1}}',
        "6 98 bc [192.168.48.15]",
    ),
    (
        '{{html "<a href=\'x\'>&\\"</a>"}} {{urlquery "a b&c=d/é"}} {{js "a\'b\\"c<d>&=\\\\"}}',
        "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt; a+b%26c%3Dd%2F%C3%A9 a\\'b\\\"c\\u003Cd\\u003E\\u0026\\u003D\\\\",
    ),
    (
        '{{json nil}} {{json 1.5}} {{json "<&>"}} {{json .Router.CaptureStats}} {{json .IPAM.PendingClaims}} {{json .VersionCheck}}',
        'null 1.5 "\\u003c\\u0026\\u003e" {"FlowMisses":42} null {"Enabled":true,"Success":true,"NewVersion":"","NextCheckAt":"2016-04-06T12:30:00Z"}',
    ),
    (
        "{{json (index .Router.Connections 1)}}",
        '{"Address":"192.168.48.13:60773","Outbound":false,"State":"pending","Info":"encrypted   fastdp 7e:ae:cd:d5:23:8d(host3)","Attrs":{"encrypted":true,"mtu":1376,"name":"fastdp"}}',
    ),
    ('{{define "x"}}[{{.}}]{{end}}{{template "x" .Version}}{{block "b" 7}}<{{.}}>{{end}}', "[2.8.1]<7>"),
    (
        "{{range .Router.Peers}}{{$n := .NickName}}{{range .Connections}}{{$n}}->{{.NickName}} {{end}}{{end}}",
        "host1->host2 host1->host3 host2->host1 host2->host3 host3->host2 host3->host1 ",
    ),
    (
        "{{.Router.Connections}}",
        "[{192.168.48.12:33866 false established unencrypted fastdp 7e:21:4a:70:2f:45(host2) map[mtu:1410 name:fastdp]} {192.168.48.13:60773 false pending encrypted   fastdp 7e:ae:cd:d5:23:8d(host3) map[encrypted:true mtu:1376 name:fastdp]} {192.168.48.14:6783 true retrying dial tcp4 192.168.48.14:6783: no route to host map[]} {192.168.48.15:6783 true failed dial tcp4 192.168.48.15:6783: no route to host, retry: 2015-08-06 18:55:38.246910357 +0000 UTC map[]} {192.168.48.16:6783 true connecting  map[]}]",
    ),
    (
        "{{.IPAM}}",
        "{<nil> 10.32.0.0/12 1048576 3 10.32.0.0/12 [{10.32.0.0 262144 4a:0f:f6:ec:1c:93 host1 true 3} {10.36.0.0 262144 7e:21:4a:70:2f:45 host2 true 1} {10.40.0.0 262144 4a:0f:f6:ec:1c:93 host1 true 2} {10.44.0.0 262144 7e:ae:cd:d5:23:8d host3 true 1}] [] []}",
    ),
    (
        '{{.DNS.Upstream}} {{printf "%q" .DNS.Upstream}} {{printf "%5v" .Router.Targets}}',
        '[8.8.8.8 8.8.4.4] ["8.8.8.8" "8.8.4.4"] [192.168.48.14 192.168.48.15]',
    ),
    (
        '{{printf "%+v" .Plugin.Config}}',
        "{Socket:/run/docker/plugins/weave.sock MeshSocket:/run/docker/plugins/weavemesh.sock Enable:true EnableV2:false EnableV2Multicast:false DNS:true DefaultSubnet:10.32.0.0/12 ProcPath:/proc}",
    ),
    ("{{.VersionCheck.String}}", "up to date; next check at 2016/04/06 12:30:00"),
]

GO_TEMPLATE_ERRORS = [
    (
        "{{.Router.Nope}}",
        "exec",
        'template: format:1:9: executing "format" at <.Router.Nope>: can\'t evaluate field Nope in type *router.NetworkRouterStatus',
        "",
    ),
    (
        "a\n{{.IPAM.Paxos.Elector}}",
        "exec",
        'template: format:2:7: executing "format" at <.IPAM.Paxos.Elector>: nil pointer evaluating *paxos.Status.Elector',
        "a\n",
    ),
    ("{{nope}}", "parse", 'template: format:1: function "nope" not defined', ""),
    ("{{if}}", "parse", "template: format:1: missing value for if", ""),
    ("{{end}}", "parse", "template: format:1: unexpected {{end}}", ""),
    ("{{range .X}}", "parse", "template: format:1: unexpected EOF", ""),
    ("{{1 | 2}}", "parse", "template: format:1: non executable command in pipeline stage 2", ""),
    ('{{"a"b}}', "parse", 'template: format:1: unexpected "b" in operand', ""),
    ("{{.A", "parse", "template: format:1: unclosed action", ""),
    (
        "{{.Router.Name 1}}",
        "exec",
        'template: format:1:9: executing "format" at <.Router.Name>: Name has arguments but cannot be invoked as function',
        "",
    ),
    ("{{printf 1}}", "exec", 'template: format:1:9: executing "format" at <1>: expected string; found 1', ""),
    (
        "{{printf .Router.Port}}",
        "exec",
        'template: format:1:16: executing "format" at <.Router.Port>: wrong type for value; expected string; got int',
        "",
    ),
    (
        "{{index .Router.Targets 5}}",
        "exec",
        'template: format:1:2: executing "format" at <index .Router.Targets 5>: error calling index: index out of range: 5',
        "",
    ),
    (
        "{{len 3}}",
        "exec",
        'template: format:1:2: executing "format" at <len 3>: error calling len: len of type int',
        "",
    ),
    ("{{nil}}", "exec", 'template: format:1:2: executing "format" at <nil>: nil is not a command', ""),
    ("{{$z}}", "parse", 'template: format:1: undefined variable "$z"', ""),
    (
        "{{range .IPAM}}x{{end}}",
        "exec",
        'template: format:1:8: executing "format" at <.IPAM>: range can\'t iterate over {<nil> 10.32.0.0/12 1048576 3 10.32.0.0/12 [{10.32.0.0 262144 4a:0f:f6:ec:1c:93 host1 true 3} {10.36.0.0 262144 7e:21:4a:70:2f:45 host2 true 1} {10.40.0.0 262144 4a:0f:f6:ec:1c:93 host1 true 2} {10.44.0.0 262144 7e:ae:cd:d5:23:8d host3 true 1}] [] []}',
        "",
    ),
    (
        '{{(printf "%s" "x").Foo}}',
        "exec",
        'template: format:1:15: executing "format" at <"x">: can\'t evaluate field Foo in type string',
        "",
    ),
    (
        '{{template "x"}}',
        "exec",
        'template: format:1:11: executing "format" at <{{template "x"}}>: template "x" not defined',
        "",
    ),
    ("{{else}}", "parse", "template: format:1: unexpected {{else}}", ""),
    ("{{)}}", "parse", 'template: format:1: unexpected ")" in command', ""),
    ("{{99999999999999999999}}", "parse", 'template: format:1: integer overflow: "99999999999999999999"', ""),
    (
        "{{9223372036854775808}}",
        "exec",
        'template: format:1:2: executing "format" at <9223372036854775808>: 9223372036854775808 overflows int',
        "",
    ),
    ("{{--1}}", "parse", 'template: format:1: bad number syntax: "--1"', ""),
    ("{{/* c *}}", "parse", "template: format:1: unclosed comment", ""),
    ('{{"\\q"}}', "parse", "template: format:1: invalid syntax", ""),
    ("{{.Router.Name.}}", "parse", "template: format:1: unexpected <.> in operand", ""),
    (
        "ok{{.Version}}\n{{len .IPAM}}",
        "exec",
        'template: format:2:2: executing "format" at <len .IPAM>: error calling len: len of type ipam.Status',
        "ok2.8.1\n",
    ),
]

GO_SPRINTF = [
    (
        "%d %s %v %q %x %X %o %b %c %U %t",
        [42, "s", True, "q", 255, "hi", 8, 5, 65, 65, False],
        '42 s true "q" ff 6869 10 101 A U+0041 false',
    ),
    (
        "%5d|%-5d|%05d|%+d|% d|%x|%#x|%#o|%08.3f|%-8.2f|%+.1e",
        [42, 42, -42, 42, 42, -255, 255, 8, 3.14159, 2.5, 12345.678],
        "   42|42   |-0042|+42| 42|-ff|0xff|010|0003.142|2.50    |+1.2e+04",
    ),
    (
        "%v %v %v %v %v %v %v",
        [1000000.0, 123456.0, 1e-05, 0.0001, 1e20, 1e21, 0.1],
        "1e+06 123456 1e-05 0.0001 1e+20 1e+21 0.1",
    ),
    (
        "%e|%E|%.0f|%.0e|%g|%G|%.3g|%.10g",
        [0.0, 123456789.0, 2.5, 3.5, 1e-07, 1e-07, 1234.5678, 1234.5678],
        "0.000000e+00|1.234568E+08|2|4e+00|1e-07|1E-07|1.23e+03|1234.5678",
    ),
    (
        "%.1f %.1f %.1f %.1f %04.1f %04.1f %04.1f",
        [0.25, 0.35, 2.5, 0.05, 5.0, 100.0, 33.33333206176758],
        "0.2 0.3 2.5 0.1 05.0 100.0 33.3",
    ),
    ("%s|%d|%d|%d %d", [5, "x", None, 1, 2], "%!s(int=5)|%!d(string=x)|%!d(<nil>)|1 2"),
    ("%d", [1, 2, "x", None], "1%!(EXTRA int=2, string=x, <nil>)"),
    ("%!|%|%", [], "%!!(MISSING)|%!|(MISSING)%!(NOVERB)"),
    ("%-", [1], "%!(NOVERB)%!(EXTRA int=1)"),
    ("%.", [1], "%!.(int=1)"),
    (
        "%q|%+q|%#q|%x|% x|% X|%.2s|%05s|%-5s|",
        ['a"b\\c\n\té\x01', "é", "abc", "héllo", "abc", "hi", "héllo", "ab", "ab"],
        '"a\\"b\\\\c\\n\\té\\x01"|"\\u00e9"|`abc`|68c3a96c6c6f|61 62 63|68 69|hé|000ab|ab   |',
    ),
    ("%[1]d %[1]x %[2]*[1]d|%[3]d|%[0]d|%[x]d", [5, 3], "5 5   5|%!d(BADINDEX)|%!d(BADINDEX)|%!d(BADINDEX)"),
    (
        "%*d|%-*d|%.*f|%*d|%.*d",
        [5, 1, 4, 2, 2, 3.14159, "x", 1, -1, 1],
        "    1|2   |3.14|%!(BADWIDTH)1|%!(BADPREC)1",
    ),
    ("%x %X %.3x %.0x", [1.5, 3.0, 1.1, 1.9], "0x1.8p+00 0X1.8P+01 0x1.19ap+00 0x1p+01"),
    ("%v %d %s", [[1, "a", None], [1, 2], {"b": 1, "a": "x"}], "[1 a <nil>] [1 2] map[a:x b:%!s(int=1)]"),
    ("%5t|%-7t|%q|%v", [True, False, True, None], " true|false  |%!q(bool=true)|<nil>"),
    (
        "%o %O %b %#b %#o %#X %.0d|%.3d|%5.3d|%-5.3d|%+05d|%#08x",
        [8, 8, 5, 5, 0, 255, 0, 7, 7, 7, -7, 255],
        "10 0o10 101 0b101 0 0XFF |007|  007|007  |-0007|0x000000ff",
    ),
    ("%c|%q|%U|%#U|%3c", [128512, 128512, 128512, 128512, 65], "😀|'😀'|U+1F600|U+1F600 '😀'|  A"),
    ("%v %v %v", [1.5e300, -0.0, 5e-324], "1.5e+300 -0 5e-324"),
]
