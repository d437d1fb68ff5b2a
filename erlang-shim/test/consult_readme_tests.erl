%% README.md describes the module as it is: every option of mod_options/1
%% and every command of consult_commands, and nothing else.
-module(consult_readme_tests).

-include_lib("eunit/include/eunit.hrl").
-include("ejabberd_commands.hrl").

%% The names of the README's top-level list items ("- `name`: ...").
listed() ->
    File = filename:join([filename:dirname(code:which(?MODULE)), "..", "README.md"]),
    {ok, Text} = file:read_file(File),
    {match, Names} = re:run(Text, "^- `([a-z_]+)`:", [multiline, global, {capture, all_but_first, binary}]),
    [binary_to_atom(N, utf8) || [N] <- Names].

options_and_commands_test() ->
    Options = [K || {K, _} <- mod_consult:mod_options(<<"localhost">>)],
    Commands = [N || #ejabberd_commands{name = N} <- consult_commands:get_commands_spec()],
    ?assertEqual(lists:sort(Options ++ Commands), lists:sort(listed())).
